package main

import (
	"context"
	"errors"

	"eyeflow/telemetry"

	"github.com/nats-io/nats.go"
)

// listenHTTP binds the process's HTTP endpoint; it is ready while NATS is connected.
func listenHTTP(addr string, p *proc, nc *nats.Conn) (*telemetry.Server, error) {
	return telemetry.Listen(addr, p.reg, func(ctx context.Context) error {
		if !nc.IsConnected() {
			return errors.New("NATS is not connected")
		}
		return nil
	})
}
