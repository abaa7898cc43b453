package dlock

import "time"

// SetLoopExitHook makes the renewal loop call f when it has given up its
// lock for the last time, just before it returns; nil removes the hook.
func SetLoopExitHook(f func()) { testHookLoopExit = f }

// Effective returns the settings in effect for l's leases (RenewInterval
// negative when automatic renewal is off) and its ReleaseTimeout.
func Effective(l *Locker) (LeaseOptions, time.Duration) {
	c := l.cfg
	renew := c.renew
	if renew <= 0 {
		renew = -1
	}
	return LeaseOptions{TTL: c.ttl, RenewInterval: renew, Drift: c.drift, Owner: c.owner, Retry: c.retry, DisableFencing: c.noFence, Limit: c.limit}, c.releaseTimeout
}
