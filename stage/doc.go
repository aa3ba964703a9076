// Package stage is the processor runtime every eyeflow stage shares. A
// processor is plain Go: a typed event in, zero or more typed events out, or
// an error (with a batch form for stages that batch). The runtime owns the
// transport: it fetches from the stage's durable pull consumer with bounded
// concurrency, publishes outputs with deterministic Nats-Msg-Ids and waits for
// JetStream to store them before acknowledging the input (publish-then-ack),
// retries transient failures with backoff, dead-letters bad input and
// exhausted messages on eye.dlq.<stage>, keeps long work alive, exports
// Prometheus metrics and logs with zerolog. Processors never touch a NATS message.
package stage
