package etcdtest

import (
	"os/exec"
	"syscall"
)

// setSysProcAttr makes the kernel kill the server if the test binary dies
// without cleaning up (a panic, a test timeout), so no server outlives it.
func setSysProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
