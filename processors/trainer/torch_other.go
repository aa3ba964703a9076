//go:build !linux

package trainer

import "os/exec"

// torchProcessGroup: without Linux process groups only the child itself is
// killed when cmd's context ends (exec.Cmd's default).
func torchProcessGroup(cmd *exec.Cmd) {}
