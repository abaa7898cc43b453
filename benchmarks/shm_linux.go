package main

import (
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// shared is a page of memory shared by the handoff contenders (a mapped
// file): a grant counter they wait on with a futex, and a stop flag.
//
// A contender that released does not try again until another contender
// was granted the lock, so every gap the scenario measures is a handoff to
// a process that was waiting, not the releaser barging back in (which would
// hide the waiters' wake-up latency, and with polling libraries keep only
// the handoffs that happened to be fast).
type shared struct {
	mem  []byte
	gen  *uint32
	stop *uint32
}

func createShared(path string) (*shared, error) {
	if err := os.WriteFile(path, make([]byte, 4096), 0o600); err != nil {
		return nil, err
	}
	return openShared(path)
}

func openShared(path string) (*shared, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return &shared{
		mem:  mem,
		gen:  (*uint32)(unsafe.Pointer(&mem[0])),
		stop: (*uint32)(unsafe.Pointer(&mem[64])),
	}, nil
}

func (s *shared) close() { unix.Munmap(s.mem) }

// granted bumps the grant counter and wakes the contenders waiting on it;
// it returns the new value.
func (s *shared) granted() uint32 {
	g := atomic.AddUint32(s.gen, 1)
	futex(s.gen, futexWake, 1<<30, nil)
	return g
}

// waitOther blocks until the grant counter moves past mine or stop is set.
func (s *shared) waitOther(mine uint32) {
	ts := unix.NsecToTimespec(int64(50 * time.Millisecond))
	for atomic.LoadUint32(s.gen) == mine && atomic.LoadUint32(s.stop) == 0 {
		futex(s.gen, futexWait, mine, &ts)
	}
}

func (s *shared) setStop() {
	atomic.StoreUint32(s.stop, 1)
	futex(s.gen, futexWake, 1<<30, nil)
}

func (s *shared) stopped() bool { return atomic.LoadUint32(s.stop) != 0 }

// Futex operations (linux/futex.h); x/sys does not name them.
const (
	futexWait = 0
	futexWake = 1
)

// futex on a shared (not process-private) word.
func futex(addr *uint32, op int, val uint32, ts *unix.Timespec) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), uintptr(op), uintptr(val), uintptr(unsafe.Pointer(ts)), 0, 0)
}

// monoNow reads CLOCK_MONOTONIC, which is one clock for every process on
// the host, so the contenders' timestamps compare directly.
func monoNow() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}
