package dlock

import (
	"math/rand/v2"
	"time"
)

// RetryStrategy decides how long to wait before the next attempt to acquire
// a busy key. Implementations must be safe for concurrent use: one strategy
// serves many calls, so it keeps no state between them.
type RetryStrategy interface {
	// Backoff returns the longest wait before attempt n+1, after n
	// attempts failed (n ≥ 1), or false to give up. dlock waits a random
	// time between half of it and all of it, and less when a release
	// notification or the holder's expiry comes first.
	Backoff(n int) (time.Duration, bool)
}

type exponentialBackoff struct{ min, max time.Duration }

func (e exponentialBackoff) Backoff(n int) (time.Duration, bool) {
	d := e.min
	for i := 1; i < n && d < e.max; i++ {
		d *= 2
	}
	return min(d, e.max), true
}

// ExponentialBackoff waits up to lo after the first failed attempt,
// doubling each time up to hi, forever.
func ExponentialBackoff(lo, hi time.Duration) RetryStrategy {
	lo = max(lo, time.Millisecond)
	return exponentialBackoff{lo, max(lo, hi)}
}

type limitRetry struct {
	s RetryStrategy
	n int
}

func (l limitRetry) Backoff(n int) (time.Duration, bool) {
	if n > l.n {
		return 0, false
	}
	return l.s.Backoff(n)
}

// LimitRetry gives up after the given number of retries of s (one more
// attempt in all).
func LimitRetry(s RetryStrategy, retries int) RetryStrategy { return limitRetry{s, retries} }

// jitter returns a random duration in [d/2, d], so waiters that failed
// together do not retry together.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}
