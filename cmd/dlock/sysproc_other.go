//go:build unix && !linux

package main

import (
	"errors"
	"syscall"
)

// sysProcAttr puts the child in a process group of its own. Outside Linux
// there is no parent-death signal: if dlock is killed with SIGKILL, the
// child keeps running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// groupAlive reports whether a process of group pgid is left.
func groupAlive(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
