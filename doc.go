// Package dlock provides distributed locks and single-runner jobs: across
// many machines, at most one holds a key at a time, and a holder that can no
// longer be sure it holds the key learns so before anyone else can take it.
//
// A [Locker] wraps one backend driver (memdriver, redisdriver, redlock) and
// does everything that is the same for all of them, once: waiting woken by
// releases instead of polling, retries, automatic renewal by one scheduler
// per Locker, loss detection on the local monotonic clock, fencing tokens,
// [Locker.Do] and leader election ([Election]).
//
//	locker, err := dlock.Open(ctx, os.Getenv("DLOCK_URL")) // e.g. redis://localhost:6379
//	...
//	err = locker.Do(ctx, "nightly-report", nil, func(ctx context.Context, lease *dlock.Lease) error {
//		return buildReport(ctx, lease.Fence()) // ctx ends if the lease is lost
//	})
//
// # Leases and loss
//
// An acquired key is a [Lease] with a TTL on the backend. The Locker renews
// it every RenewInterval (TTL/3 by default). The lease also keeps a local
// deadline: the time the last confirmed acquire or refresh was sent, plus
// TTL, minus a drift allowance. The backend's expiry is always later. If no
// renewal is confirmed by the local deadline, or the backend says the key is
// no longer held, the lease's context is cancelled with cause [ErrLeaseLost]
// — before the backend frees the key. Work that needs exclusivity must run
// under [Lease.Context] (or the context [Locker.Do] passes) and stop when it
// ends.
//
// Loss is seen at the first look: [Lease.Err], and the Err and Done of
// [Lease.Context], compare the local deadline with the monotonic clock
// themselves, so a process resuming from a pause learns of the loss at its
// first check, even before the renewal goroutine runs again.
//
// Work that needs time to stop safely can start stopping before the loss:
// [Lease.WithMargin] returns a context cancelled a chosen margin before the
// local deadline unless a renewal has moved the deadline further by then;
// [Lease.ValidUntil] reports the current local deadline for schedules of
// one's own (the dlock command sends SIGTERM when the time left is within
// its grace period and SIGKILL before the deadline).
//
// # Waiting and handoff
//
// [Locker.Acquire] waits for a held key by subscribing to its releases.
// Over a driver that hands off ([driver.Handoff]: redisdriver, memdriver),
// each attempt of a waiter is queued on the backend, first come, first
// served, and a release grants the key to the first waiter still
// subscribed, in the same atomic step, with a fresh fence: the waiter is
// told in the release's notification and holds the key without another
// round trip. A waiter that gave up is passed over; one that gives up with
// a grant in hand releases it, and the next waiter gets the key at once.
// Giving up is synchronous: when a waiting Acquire returns without a lease
// (its ctx ended, its retries ran out, or [Locker.Close] ended its wait),
// no token of it holds the key, as the driver puts every grant it made to
// the waiter, or may have made, in the waiter's hands before it lets go.
//
// Safety: a handed-off lease counts from the moment the waiter sent the
// queued attempt the grant names, as if that attempt's reply had granted
// it, and ends TTL − drift later. The backend received that attempt after
// it was sent and grants at the release, later still, for a whole TTL, so
// its expiry is never before the lease's local deadline. The worst case is
// that of any holder: a waiter frozen at the moment of the grant keeps the
// key for one TTL, as a frozen holder does, and fences stop it if it wakes
// up late. Semaphore slots are never handed off: a release wakes all their
// waiters.
//
// # Fencing
//
// A lease's context ending is a promise about this process; it cannot stop a
// process that was paused (GC, swapped out, a stopped VM) and wakes up after
// its lease expired, still believing it holds the lock. Fencing tokens stop
// such a holder at the resource: every lease carries [Lease.Fence], strictly
// greater than every earlier fence on the key. Send it with every write; the
// resource remembers the highest fence it accepted and rejects lower ones.
// See Martin Kleppmann, "How to do distributed locking" (2016). Users who
// pass fences to nothing can switch them off ([Options].DisableFencing,
// fencing=false in a URL): lock leases then carry fence 0, and the backend
// skips the fence work (on Redis, a bare SET NX takes a free key).
//
// # Semaphores
//
// [Locker.Semaphore] makes a key that up to N leases hold at once: N
// concurrent backups, N workers on a rate-limited API. Its Acquire,
// TryAcquire and Do return the same [Lease] as a lock, with the same
// renewal, loss detection, wake-ups and fences (strictly greater than every
// earlier grant on the key, in any slot); a lock is the case N = 1, and
// [ElectionOptions].Limit gives an election N leaders. Every client of a
// key must give the same N ([ErrLimitMismatch] otherwise). memdriver and
// redisdriver offer semaphores; redlock refuses them, with
// errors.ErrUnsupported, because a majority of per-node semaphores does
// not bound the holders.
//
// # URLs
//
// [Open] picks a driver by URL scheme; drivers register themselves when
// their package is imported:
//
//	mem://NAME                      memdriver, in this process
//	redis://[user:pass@]host:port/db, rediss://…  redisdriver, one server (TLS)
//	redis+cluster://h1:p,h2:p       redisdriver, Redis Cluster
//	redis+sentinel://h1:p,h2:p/NAME redisdriver, Sentinel-managed master
//	redlock://h1:p,h2:p,h3:p        redlock, a quorum of independent servers
//
// The query parameters ttl, renew, drift (durations), owner and fencing
// (fencing=false: [Options].DisableFencing) set the Locker's [Options] for
// every scheme; each driver documents its own.
// Unknown parameters are rejected; errors never show passwords.
//
// # Errors
//
// Errors wrap the sentinels [ErrNotAcquired], [ErrNotHeld], [ErrLeaseLost],
// [ErrClosed], [ErrUnavailable], [ErrInvalid], [ErrResigned] and
// [ErrLimitMismatch]; test them
// with errors.Is. When a context ends while waiting, the error wraps both
// ErrNotAcquired and ctx.Err(). Bad arguments are reported before any I/O.
//
// # Safety
//
// Lockers, Leases and Elections are safe for concurrent use. Tokens are 128
// random bits from crypto/rand: only the holder can refresh or release. The
// guarantees hold while the backend's clock runs at a rate within the drift
// allowance of this process's, and, for a single Redis server, while the
// server does not lose acknowledged writes (failover to a replica that had
// not received the lock can grant it twice; fences still reject the stale
// holder's writes). Goroutines the package starts end with the leases or
// Locker that own them, except the goroutine that reports events to an
// Observer or Logger, which ends when no event is left to report. User code
// (Observer, Logger) never runs on the renewal machinery, and its panics are
// recovered.
package dlock
