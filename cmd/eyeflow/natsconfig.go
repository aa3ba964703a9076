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
// is generated from; with --format helm, the same users as values of the
// official NATS chart (deploy/helm/nats-values.yaml).
func runNATSConfig(ctx context.Context, args []string, out, errOut io.Writer) error {
	var file, format string
	fs := newFlagSet("nats-config", "", "Writes the nats-server configuration of eyeflow's NATS users: one per processor, each allowed only its own\n"+
		"subjects, consumers and buckets. Passwords are $EYEFLOW_NATS_PASSWORD_<ROLE> references the server resolves from its environment.", out, errOut)
	fs.stringVar(&file, "out", "", "file to write (default: standard output)")
	fs.stringVar(&format, "format", "conf", "conf: a nats-server authorization block (auth.conf); helm: values of the nats/nats chart, passwords from Secret "+natsauth.HelmSecret)
	if err := fs.parse(args, func() error {
		if format != "conf" && format != "helm" {
			return fmt.Errorf("--format %q: want conf or helm", format)
		}
		return nil
	}); err != nil {
		return err
	}
	var b bytes.Buffer
	render := func(w io.Writer) error { return natsauth.Render(w, natsauth.Users()) }
	if format == "helm" {
		render = func(w io.Writer) error { return natsauth.RenderHelmValues(w, natsauth.Users(), natsauth.HelmSecret) }
	}
	if err := render(&b); err != nil {
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
