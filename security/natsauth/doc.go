// Package natsauth is eyeflow's NATS least-privilege model as code: one NATS
// user per stage of the catalogue (package pipeline), derived from its
// declaration, allowed to publish only its own output and DLQ
// subjects and the JetStream API calls of its own consumers, streams,
// object-store and KV buckets, and to subscribe only to its own reply
// inbox. Render writes the table as a nats-server configuration whose
// passwords are environment references, so the file holds no secret and
// stays in sync with the topology (a test compares it with the checked-in
// deploy/nats/auth.conf).
package natsauth
