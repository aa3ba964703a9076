// Package security holds eyeflow's input and access policies, one small
// package each: objkey (which object keys a stage accepts and writes) and
// natsauth (the per-processor NATS users and permissions, rendered as a
// nats-server configuration).
package security
