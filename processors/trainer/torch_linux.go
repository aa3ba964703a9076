package trainer

import (
	"os/exec"
	"syscall"
)

// torchProcessGroup starts cmd in a process group of its own, killed as a
// whole when cmd's context ends: torchrun's workers and the data-loader
// processes die with the child instead of training on as orphans. The
// child is also killed if the thread that started it (and so eyeflow)
// dies.
func torchProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
