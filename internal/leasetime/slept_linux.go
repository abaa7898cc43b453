package leasetime

import (
	"syscall"
	"time"
	"unsafe"
)

const (
	clockMonotonic = 1
	clockBoottime  = 7
)

func clockNow(id uintptr) time.Duration {
	var ts syscall.Timespec
	syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, id, uintptr(unsafe.Pointer(&ts)), 0)
	return time.Duration(ts.Nano())
}

// slept reads CLOCK_BOOTTIME − CLOCK_MONOTONIC. The two clocks tick
// together (NTP slews both) except while the machine sleeps, so the
// difference is exact when both are read at one instant; it is read
// between two readings of CLOCK_MONOTONIC, off by at most the time
// between them, which is kept small.
func slept() time.Duration {
	var best, window time.Duration
	for i := range 8 {
		m1 := clockNow(clockMonotonic)
		b := clockNow(clockBoottime)
		m2 := clockNow(clockMonotonic)
		if i == 0 || m2-m1 < window {
			best, window = b-m2, m2-m1
		}
		if window < 20*time.Microsecond {
			break
		}
	}
	return best
}
