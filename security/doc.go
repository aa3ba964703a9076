// Package security holds eyeflow's input and access policies, one small
// package each: objkey (which object keys a stage accepts and writes),
// natsauth (the per-processor NATS users and permissions, rendered as a
// nats-server configuration) and pseudonym (how a patient id becomes the
// keyed pseudonym that events carry instead of it).
package security
