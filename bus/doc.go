// Package bus owns eyeflow's NATS JetStream plumbing: the event streams
// (one per subject family of the contract), the options every stream,
// consumer and KV bucket is shaped by (replicas, retention, duplicate window,
// redelivery), applying a topology idempotently (Apply), binding to buckets
// and consumers without changing them (OpenKeyValue, EnsureConsumer), and the
// embedded nats-server that `eyeflow up` and the tests run in-process. Which
// stage reads which consumer and owns which bucket is declared in the stage
// catalogue (package pipeline), which builds the full topology from these
// parts. The same topology runs on one embedded server or on a JetStream
// cluster: only the replica count changes.
package bus
