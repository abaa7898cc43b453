//go:build !linux

package etcdtest

import "os/exec"

// setSysProcAttr does nothing: only Linux kills a child with its parent.
func setSysProcAttr(*exec.Cmd) {}
