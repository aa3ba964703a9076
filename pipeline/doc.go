// Package pipeline is the stage catalogue: every stage of eyeflow declared
// once, as data. A stage's declaration names the durable consumers it reads
// (with their settings), the subjects it publishes, the KV buckets it owns or
// uses, the object-store buckets it reads or writes, the streams it scans,
// and the dead-letter reasons it gives.
//
// Everything that used to repeat these facts derives from here: the
// JetStream topology (Topology), the per-stage NATS users and permissions
// (security/natsauth), the dashboard's stage table, `eyeflow up` and each
// `eyeflow <stage>` command (cmd/eyeflow, which only adds how to build each
// stage's processor from its flags), the checks of compose.yaml's services
// and of each processor's dead-letter reasons, and the topology every test
// and the e2e pipeline run on. A processor may run only on a consumer
// declared here for its stage. Adding a stage, a consumer or a bucket is a
// change here and in the stage's own package (and its flags in
// cmd/eyeflow). schemas/registry.go does the same for events.
//
// The package is plain data and a few derivations: it imports no processor
// and no stage runtime, so anything below cmd/ may import it. (It reaches
// the NATS client only through the names and specs it takes from bus and
// objstore; TestStagesStandAlone holds the processors themselves to no
// NATS import.)
package pipeline
