// Package telemetry owns how eyeflow processes report on themselves: the
// zerolog logger (JSON, or human-readable when stderr is a terminal) and the
// HTTP server with /metrics (Prometheus), /healthz and /readyz that every
// eyeflow process exposes on one port.
package telemetry
