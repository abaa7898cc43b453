//go:build !linux

package etcdtest

import (
	"os/exec"
	"time"
)

// setSysProcAttr does nothing: only Linux kills a child with its parent.
func setSysProcAttr(*exec.Cmd) {}

// stopped cannot tell whether the process is stopped: it waits a moment
// for the signal to take effect and says so.
func stopped(int) bool {
	time.Sleep(50 * time.Millisecond)
	return true
}
