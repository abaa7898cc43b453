//go:build !linux

package redistest

import (
	"os"
	"os/exec"
)

var sigterm os.Signal = os.Interrupt

func setSysProcAttr(cmd *exec.Cmd) {}
