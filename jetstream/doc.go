// Package jetstream owns eyeflow's NATS JetStream topology as code (streams,
// durable pull consumers and key-value buckets, applied idempotently by Apply)
// and the embedded nats-server that `eyeflow up` and the tests run in-process.
// The same topology runs on one embedded server or on a JetStream cluster:
// only the replica count changes.
package jetstream
