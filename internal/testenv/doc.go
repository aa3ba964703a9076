// Package testenv starts the real components eyeflow's tests run against: an
// embedded nats-server with JetStream on a random port and a t.TempDir() store,
// and a real MinIO server. Everything started is stopped in t.Cleanup; a
// missing dependency fails the test loudly instead of skipping it.
package testenv
