// Package memdriver is an in-process dlock backend: locks live in a map in
// this process. It is meant for unit tests of code that uses dlock, and for
// programs that run as a single process; it cannot coordinate separate
// processes or machines.
//
// It behaves like a real backend in every way the dlock API shows: locks
// expire after their TTL, fences increase per key, releases wake waiters,
// and [dlock.Locker.Holders] works. So code tested against it meets the same
// contract it will meet on Redis.
//
//	l := memdriver.New(nil)
//	defer l.Close()
//	err := l.Do(ctx, "nightly-report", nil, func(ctx context.Context, lease *dlock.Lease) error {
//		return report(ctx, lease.Fence())
//	})
//
// A release hands the key straight to the first queued waiter that still
// waits ([driver.Handoff]), as the Redis driver does, so that waiting is
// tested as it runs in production.
//
// To model several machines, make one [Store] and give each its own Locker
// with [Store.Locker]; they see the same locks.
//
// # Fake time
//
// Expiry is measured with time.Now and no goroutines are involved, so the
// driver works with [testing/synctest]: inside synctest.Test, a lease with a
// 15s TTL can be renewed for an hour of fake time, or expire, in
// microseconds of real time. Create the Store and the Locker inside the
// bubble, and Close the Locker before the bubble ends:
//
//	synctest.Test(t, func(t *testing.T) {
//		l := memdriver.New(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 10 * time.Second}})
//		defer l.Close()
//		lease, err := l.Acquire(t.Context(), "k", nil)
//		...
//		time.Sleep(time.Hour) // renewed all along, on fake time
//	})
//
// A store belongs to where it was made: inside one bubble, or outside any.
// Used across that border it would mix the fake clock with the real one
// (a lock taken inside looks long expired outside) and a Locker made
// outside would wait on timers the bubble never advances. So its calls
// fail instead, with an error wrapping [dlock.ErrInvalid] that says so:
// the driver tells the clocks apart (a bubble's starts in the year 2000).
// A store made in another bubble whose clock is not behind cannot be told
// apart; a Locker used there makes the Go runtime fail with "send on
// synctest channel from outside bubble". A named mem://NAME store is made
// by its first Open: inside bubbles, open a name of the bubble's own (the
// test's name, say) or a private mem://.
//
// # URLs
//
// The scheme is "mem" ([Scheme]); import the package for its side effect to
// use it with [dlock.Open]:
//
//	mem://NAME   a store shared by every Open of the same NAME in this process
//	mem://       a private store of its own
//
// Named stores live as long as the process, on the side of a
// testing/synctest bubble's border where they were first opened (see Fake
// time). The driver has no query
// parameters of its own and rejects unknown ones; the common ones (ttl,
// renew, drift, owner, fencing) are handled by [dlock.Open].
//
// # Errors
//
// Refresh, Release and RaiseFence return an error wrapping
// [driver.ErrNotHeld] (the same value as [dlock.ErrNotHeld]) when the key is
// not held by the token. A call whose context has ended returns an error
// wrapping ctx.Err() and does nothing. A closed client's calls return an
// error wrapping [dlock.ErrClosed]. An Acquire with an empty token, and a
// call from across a synctest bubble's border (see Fake time), return an
// error wrapping [dlock.ErrInvalid]. The driver never returns
// [driver.ErrUnavailable].
//
// # Safety
//
// [Store], its clients and the Lockers over them are safe for concurrent
// use. A store keeps a small entry (the last fence) for every key it has
// ever locked, so that fences keep increasing after a lock expires; expired
// locks are cleared when their key is next used. A store meant to live long
// should therefore see a bounded set of keys. Locks do not survive the
// process: after a restart, fences start again from 1.
package memdriver
