package main

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

// subreaper is true where the guardian can adopt every orphaned
// descendant of the job (PR_SET_CHILD_SUBREAPER, Linux 3.4).
const subreaper = true

// setSubreaper makes the calling process a child subreaper: a descendant
// whose parent exits is reparented to it rather than to init, so that it
// can still be found and killed.
func setSubreaper() {
	const prSetChildSubreaper = 36
	syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
}

// guardianSysProcAttr puts the guardian in a process group of its own, so
// that the terminal's job-control and interrupt signals, meant for dlock,
// do not reach it. It needs no parent-death signal: its control pipe
// reads end-of-file when dlock dies.
func guardianSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// jobSysProcAttr puts the job in a process group of its own, and has the
// kernel SIGKILL it if the guardian dies (the guardian kills the rest of
// the tree in every other case).
// If cg is not nil, the job starts in that cgroup (clone3's
// CLONE_INTO_CGROUP), before it can fork.
func jobSysProcAttr(cg *jobCgroup) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if cg != nil {
		a.UseCgroupFD, a.CgroupFD = true, int(cg.dir.Fd())
	}
	return a
}

// inheritedFDs returns the descriptors above stderr that dlock was
// started with and passes on to the job: the open ones without
// close-on-exec (every descriptor Go opens has it), such as a shell's 3>file
// or systemd's sockets, in increasing order.
func inheritedFDs() []int {
	dir, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	var fds []int
	for _, e := range dir {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
		if errno == 0 && flags&syscall.FD_CLOEXEC == 0 {
			fds = append(fds, fd)
		}
	}
	slices.Sort(fds)
	return fds
}

// A bootTimer fires after a time on CLOCK_BOOTTIME (a timerfd), which
// counts a suspend of the machine: at a resume past its time, at once. It
// wakes the guardian through guardianWake. A nil bootTimer (no timerfd)
// does nothing.
type bootTimer struct{ fd int }

func newBootTimer() *bootTimer {
	const clockBoottime = 7
	fd, _, errno := syscall.RawSyscall(syscall.SYS_TIMERFD_CREATE, clockBoottime, syscall.O_CLOEXEC, 0)
	if errno != 0 {
		return nil
	}
	t := &bootTimer{int(fd)}
	go func() { // for the guardian's life
		var buf [8]byte
		for {
			if _, err := syscall.Read(t.fd, buf[:]); err != nil && err != syscall.EINTR {
				return
			}
			select {
			case guardianWake <- struct{}{}:
			default:
			}
		}
	}()
	return t
}

// set arms t to fire d from now (d > 0), on CLOCK_BOOTTIME.
func (t *bootTimer) set(d time.Duration) {
	if t == nil {
		return
	}
	var spec [2]syscall.Timespec // interval (none), value
	spec[1] = syscall.NsecToTimespec(int64(d))
	syscall.RawSyscall6(syscall.SYS_TIMERFD_SETTIME, uintptr(t.fd), 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
}

// guardianNice is the guardian's scheduling priority (nice), where it may
// raise its own (root): on a loaded machine the kill at the deadline must
// not wait for the CPU, and neither must the exit of the killed.
const guardianNice = -5

// raisePriority gives every thread of the calling process guardianNice;
// threads started later inherit it. The job, started before, keeps its
// own. Errors (not root) leave the priority as it is.
func raisePriority() {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return
	}
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			syscall.Setpriority(syscall.PRIO_PROCESS, tid, guardianNice)
		}
	}
}

// hurry gives processes that were just sent SIGKILL the guardian's
// priority, so that they exit, and free the lease's resource, before the
// deadline although the machine is loaded (or the job niced).
func hurry(pids []int) {
	for _, pid := range pids {
		syscall.Setpriority(syscall.PRIO_PROCESS, pid, guardianNice)
	}
}

// monoNow reads CLOCK_MONOTONIC, which every process of the machine
// shares, so that dlock can hand the lease's deadline to the guardian.
func monoNow() int64 {
	const clockMonotonic = 1
	var ts syscall.Timespec
	syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}

// procInfo is a process as /proc/PID/stat describes it.
type procInfo struct {
	pid, ppid, pgid int
	zombie          bool
	start           uint64 // start time in clock ticks after boot: with pid, it names the process
}

// readProc reads /proc/PID/stat.
func readProc(pid int) (procInfo, bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, false // exited meanwhile
	}
	// "pid (comm) state ppid pgrp ..."; comm may hold anything, so
	// parse after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return procInfo{}, false
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 20 {
		return procInfo{}, false
	}
	ppid, _ := strconv.Atoi(string(f[1]))
	pgid, _ := strconv.Atoi(string(f[2]))
	start, _ := strconv.ParseUint(string(f[19]), 10, 64)
	return procInfo{pid: pid, ppid: ppid, pgid: pgid, zombie: f[0][0] == 'Z' || f[0][0] == 'X', start: start}, true
}

// procInfos describes the living processes among pids.
func procInfos(pids []int) []procInfo {
	ps := make([]procInfo, 0, len(pids))
	for _, pid := range pids {
		if p, ok := readProc(pid); ok && !p.zombie {
			ps = append(ps, p)
		}
	}
	return ps
}

// pidHandle returns a handle on process p (a pidfd) that a later reuse of
// its pid cannot redirect, or nil if p has exited.
func pidHandle(p procInfo) *os.Process {
	h, err := os.FindProcess(p.pid)
	if err != nil {
		return nil
	}
	if now, ok := readProc(p.pid); !ok || now.start != p.start {
		h.Release() // the pid names another process now
		return nil
	}
	return h
}

// processes lists the processes of the machine, from /proc.
func processes() []procInfo {
	dir, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	ps := make([]procInfo, 0, len(dir))
	for _, e := range dir {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok {
			ps = append(ps, p)
		}
	}
	return ps
}

// descendants returns the living descendants of pid.
func descendants(pid int) []procInfo {
	ps := processes()
	children := make(map[int][]procInfo)
	for _, p := range ps {
		children[p.ppid] = append(children[p.ppid], p)
	}
	var out []procInfo
	queue := []int{pid}
	for len(queue) > 0 {
		for _, c := range children[queue[0]] {
			queue = append(queue, c.pid)
			if !c.zombie {
				out = append(out, c)
			}
		}
		queue = queue[1:]
	}
	return out
}

// groupAlive reports whether a process of group pgid still runs. Zombies
// do not count: kill(2) finds them, but in a container whose init does not
// reap orphans they stay forever, and they run nothing.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	for _, p := range processes() {
		if p.pgid == pgid && !p.zombie {
			return true
		}
	}
	return false
}
