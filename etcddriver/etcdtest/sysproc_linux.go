package etcdtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// setSysProcAttr makes the kernel kill the server if the test binary dies
// without cleaning up (a panic, a test timeout), so no server outlives it.
func setSysProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// stopped reports whether the process is stopped by a signal, by its
// state in /proc ('T').
func stopped(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	i := bytes.LastIndexByte(data, ')')
	return i >= 0 && i+2 < len(data) && data[i+2] == 'T'
}
