package leasetime

import (
	"syscall"
	"time"
	"unsafe"
)

const clockBoottime = 7

// boottime reads CLOCK_BOOTTIME, which Go does not expose: a system call
// (the vDSO serves it on recent kernels, but Go calls only its own
// clocks through the vDSO).
func boottime() time.Duration {
	var ts syscall.Timespec
	syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockBoottime, uintptr(unsafe.Pointer(&ts)), 0)
	return time.Duration(ts.Nano())
}

// monoBase anchors monotonic readings: time.Since(monoBase) is
// CLOCK_MONOTONIC (Go's monotonic clock on Linux, read through the vDSO
// without a system call) less a constant.
var monoBase = time.Now()

// slept reads CLOCK_BOOTTIME − CLOCK_MONOTONIC, plus a constant that
// differences between readings cancel (see [Slept]). The two clocks tick
// together (NTP slews both) except while the machine sleeps, so the
// difference is exact when both are read at one instant; CLOCK_BOOTTIME
// is read between two readings of the monotonic clock, and the result is
// off by at most half the time between them, which is kept small. One
// system call per reading: a lease reads it when it is granted and when
// it is released, and every reading is on the path of an acquire+release
// pair.
func slept() time.Duration {
	var best, window time.Duration
	for i := range 8 {
		m1 := time.Since(monoBase)
		b := boottime()
		m2 := time.Since(monoBase)
		if i == 0 || m2-m1 < window {
			best, window = b-(m1+m2)/2, m2-m1
		}
		if window < 20*time.Microsecond {
			break
		}
	}
	return best
}
