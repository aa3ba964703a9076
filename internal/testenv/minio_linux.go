package testenv

import (
	"os/exec"
	"syscall"
)

// setProcAttrs makes the kernel kill MinIO when the test binary dies, so a
// crashed or killed test leaves no server behind. (Linux sends it when the
// starting OS thread exits; Go keeps threads alive unless a goroutine exits
// while locked to one, which tests here do not do.)
func setProcAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
