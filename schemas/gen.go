package schemas

// The JSON Schema files under jsonschema/ are generated from the Go types;
// TestSchemaFilesUpToDate fails when they drift.
//go:generate go run ./internal/gen -dir jsonschema
