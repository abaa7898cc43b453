//go:build unix && !linux

package main

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// subreaper is false: outside Linux the guardian cannot adopt orphans, and
// contains only the job's process group.
const subreaper = false

func setSubreaper() {}

// guardianSysProcAttr puts the guardian in a process group of its own.
func guardianSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// jobSysProcAttr puts the job in a process group of its own. There is no
// parent-death signal outside Linux.
func jobSysProcAttr(*jobCgroup) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// monoNow is the wall clock outside Linux: it is what the processes of the
// machine share without golang.org/x/sys. A clock step while a job runs
// moves the guardian's copy of the deadline.
func monoNow() int64 { return time.Now().UnixNano() }

// inheritedFDs cannot tell inherited descriptors from dlock's own without
// /proc: the job gets stdin, stdout and stderr only.
func inheritedFDs() []int { return nil }

// bootTimer is Linux only: elsewhere the guardian's timer is its only one.
type bootTimer struct{}

func newBootTimer() *bootTimer       { return nil }
func (*bootTimer) set(time.Duration) {}

func raisePriority() {}
func hurry([]int)    {}

type procInfo struct{ pid, pgid int }

func procInfos([]int) []procInfo { return nil }

func pidHandle(procInfo) *os.Process { return nil }

// descendants cannot be listed portably: only the job's group is known.
func descendants(int) []procInfo { return nil }

// groupAlive reports whether a process of group pgid is left.
func groupAlive(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
