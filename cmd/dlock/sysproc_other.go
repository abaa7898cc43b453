//go:build unix && !linux

package main

import "syscall"

// sysProcAttr puts the child in a process group of its own. Outside Linux
// there is no parent-death signal: if dlock is killed with SIGKILL, the
// child keeps running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
