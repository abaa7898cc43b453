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
//	locker, err := dlock.Open(ctx, os.Getenv("DLOCK_URL"), nil) // e.g. redis://localhost:6379
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
// A handed-off lease counts from the moment the waiter sent the queued
// attempt the grant names; why it is then as safe as one from an
// attempt's own reply is argued in [driver.Handoff]. Semaphore slots are
// never handed off: a release wakes all their waiters.
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
// pass fences to nothing can switch them off ([LeaseOptions].DisableFencing,
// fencing=false in a URL): lock leases then carry fence 0, and the backend
// skips the fence work (on Redis, a bare SET NX takes a free key).
//
// # Semaphores
//
// [LeaseOptions].Limit = N lets up to N leases hold a key at once: N
// concurrent backups, N workers on a rate-limited API. Acquire, TryAcquire
// and Do return the same [Lease] as for a lock, with the same renewal, loss
// detection, wake-ups and fences (strictly greater than every earlier
// grant on the key, in any slot); a lock is the case N = 1, and an
// [Election] whose lease options give a Limit has N leaders.
// [Locker.Holders] reports every holder. Every client of a key must give
// the same N ([ErrLimitMismatch] otherwise). memdriver and redisdriver
// offer semaphores; redlock refuses them, with errors.ErrUnsupported,
// because a majority of per-node semaphores does not bound the holders.
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
// (fencing=false: [LeaseOptions].DisableFencing) set the Locker's default
// [LeaseOptions] for every scheme; each driver documents its own.
// Unknown parameters are rejected; errors never show passwords.
//
// # Errors
//
// Errors wrap sentinels, tested with errors.Is; each means one thing, so
// that a program can act on it. What each means, and what to do:
//
//   - [ErrNotAcquired]: the key is held by someone else. TryAcquire found
//     it held, or a waiting Acquire or Do gave up (ctx ended, then
//     ctx.Err() is in the chain too, or the RetryStrategy gave up) while
//     it was held. Skip the work (another machine does it), or wait longer.
//     It never means that the backend failed.
//   - [ErrUnavailable]: the backend failed: unreachable, refusing service
//     for now (failover, loading), or not answering in time. A waiting call
//     whose ctx ends during an outage wraps ctx.Err() and ErrUnavailable.
//     Report it and try again later: nobody may be doing the work.
//   - ctx.Err() alone: ctx ended before any attempt was answered; nothing
//     is known of the key or the backend. Give the call more time.
//   - [ErrInvalid]: a bad argument, option or URL, reported before any
//     I/O. Fix the code or the configuration; retrying cannot help.
//   - [ErrLimitMismatch]: the key is in use with another
//     [LeaseOptions].Limit (a lock is limit 1). Give every client of the
//     key the same limit.
//   - errors.ErrUnsupported: the backend lacks a capability (semaphores on
//     redlock, [Locker.Holders] on a driver that cannot inspect). Use a
//     backend that has it.
//   - [ErrLeaseLost]: the cause of a lease's context when the lease ended
//     without Release (taken over, or renewal unconfirmed until the local
//     deadline); also wrapped by Do's and Release's errors then. Stop the
//     work: someone else may hold the key now.
//   - [ErrNotHeld]: a Refresh or Release found the key not held by this
//     lease. Nothing to undo; treat the lease as lost.
//   - [ErrClosed]: the Locker was closed. Open another.
//   - [ErrResigned]: the cause of a leader's context after
//     [Election.Resign].
//
// So the idiom for a job that one machine runs is:
//
//	err := locker.Do(ctx, "nightly-report", nil, run)
//	if errors.Is(err, dlock.ErrNotAcquired) {
//		return nil // another machine runs it
//	}
//	return err // the job's error, an outage, misuse: report it
//
// Errors never show a password: URLs appear only redacted
// ([driver.RedactURL]).
// The Redis client go-redis logs dial failures on its own, through a
// logger global to the process, which dlock leaves alone; see Logging in
// package redisdriver to silence it.
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
