package objstore

import "github.com/nats-io/nats.go/jetstream"

// InfoFromObject describes a JetStream object-store entry the way the
// JetStream backend does (ETag: hex SHA-256 of the bytes), for code that
// watches a bucket directly.
func InfoFromObject(oi *jetstream.ObjectInfo) (Info, error) { return jsInfo(oi) }
