// Package stage is the processor runtime every eyeflow stage shares. A
// processor is plain Go: a typed event in, zero or more typed events out, or
// an error (with a batch form for stages that batch). The runtime owns the
// transport: it fetches from the stage's durable pull consumer with bounded
// concurrency, publishes outputs with deterministic Nats-Msg-Ids and waits for
// JetStream to store them before acknowledging the input (publish-then-ack),
// retries transient failures with backoff, dead-letters bad input and
// exhausted messages on eye.dlq.<stage>, keeps long work alive, exports
// Prometheus metrics and logs with zerolog. Processors never touch a NATS message.
//
// What a processor needs beyond its input it is handed, as interfaces, by
// whoever runs it: a KeyValue for its state (the bucket the topology
// declared, KeyValueOf), a Publisher for events it sends outside a handler
// (PublisherOf: it waits for the stream's ack, so "published" means stored),
// a StreamReader for decisions read from the record (StreamReaderOf), and a
// Runner when it starts stages itself. Only this package and jetstream
// import the NATS client; a processor's logic can be tested against the
// in-memory KeyValue and Publisher of internal/stagetest, whose KeyValue is
// held to the same contract as the JetStream one.
package stage
