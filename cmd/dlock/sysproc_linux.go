package main

import "syscall"

// sysProcAttr puts the child in a process group of its own, and has the
// kernel SIGKILL it if dlock dies (even by SIGKILL), so that a crash of
// dlock never leaves the command running without the lock.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
