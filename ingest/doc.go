// Package ingest owns how uploads become eye.uploads events: `eyeflow put`
// (files and ImageFolder trees into the raw bucket), the watcher that turns
// every new object in the embedded JetStream object store into an event
// whoever wrote it, the ledger of upload identities that already have an
// event, and the reconciler that lists the bucket and publishes events for
// objects that have none (lost notifications, S3 stores that cannot notify).
// Every event it publishes carries a Msg-Id derived from the upload identity,
// so no path can report the same upload twice.
package ingest
