//go:build !linux

package testenv

import "os/exec"

// setProcAttrs has nothing to set outside Linux; t.Cleanup stops MinIO.
func setProcAttrs(cmd *exec.Cmd) {}
