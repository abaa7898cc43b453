package leasetime

import (
	"sync/atomic"
	"time"
)

// MinSleep is the shortest suspend a deadline counts: shorter differences
// between two readings of [Slept] are the error of reading two clocks.
const MinSleep = time.Millisecond

// Slept returns how long the machine has been suspended since it booted,
// plus a constant of the process (only differences between readings mean
// anything): on Linux, CLOCK_BOOTTIME less CLOCK_MONOTONIC, the clock that Go's
// monotonic readings (and so every lease deadline) come from and that
// stands still while the machine sleeps; 0 where the system does not tell.
// The difference between two readings is the time slept in between: a
// deadline set at the first reading has that much less time left than the
// monotonic clock says, since the backend's expiry runs on without pause.
//
// A fake suspend (see [Suspend]) counts too.
func Slept() time.Duration { return slept() + time.Duration(fakeSleep.Load()) }

// fakeSleep is the total of the fake suspends.
var fakeSleep atomic.Int64

// Suspend makes [Slept] report d more from now on, as if the machine had
// just been suspended for d: the monotonic clock did not move, the rest of
// the world did. It is for tests, which cannot suspend the machine.
func Suspend(d time.Duration) { fakeSleep.Add(int64(d)) }
