// Package schemas owns eyeflow's public event contract: the NATS subjects, one
// Go type per event (each JSON document carries "schema": "eyeflow.<name>.v<N>"),
// the decoders that turn wire bytes into those types, and the JSON Schema files
// generated from the types. Downstream consumers rely on these shapes, so a
// change is made only by adding a new version, never by editing an existing one.
package schemas
