// Package objstore owns eyeflow's access to object storage behind one small
// interface (get, put, stat, list, copy) with two real backends: the NATS
// JetStream Object Store, the embedded default that needs no extra server, and
// S3 through minio-go (MinIO, AWS S3, any S3-compatible server). Objects are
// streamed in both directions rather than held whole in memory.
package objstore
