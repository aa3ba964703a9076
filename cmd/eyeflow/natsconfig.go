package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"eyeflow/security/natsauth"
)

// runNATSConfig prints the nats-server authorization block of the
// per-processor users (security/natsauth), the file deploy/nats/auth.conf
// is generated from.
func runNATSConfig(ctx context.Context, args []string, out, errOut io.Writer) error {
	var file string
	fs := newFlagSet("nats-config", "", "Writes the nats-server configuration of eyeflow's NATS users: one per processor, each allowed only its own\n"+
		"subjects, consumers and buckets. Passwords are $EYEFLOW_NATS_PASSWORD_<ROLE> references the server resolves from its environment.", out, errOut)
	fs.stringVar(&file, "out", "", "file to write (default: standard output)")
	if err := fs.parse(args); err != nil {
		return err
	}
	var b bytes.Buffer
	if err := natsauth.Render(&b, natsauth.Users()); err != nil {
		return err
	}
	if file == "" {
		_, err := out.Write(b.Bytes())
		return err
	}
	if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("nats-config: %w", err)
	}
	return nil
}
