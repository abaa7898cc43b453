// Package driver defines the interface that dlock backends implement.
//
// Applications do not use this package: they use package dlock and one
// driver package (memdriver, redisdriver, redlock). It is for people who
// write a backend, in the way database/sql/driver is for database drivers.
//
// A driver is deliberately small and dumb. Each method makes one round of
// backend calls and returns: no retries, no sleeping, no renew loops and no
// token generation. Package dlock owns all of those, once, for every driver.
//
// Optional capabilities are separate small interfaces ([Notifier],
// [Handoff], [Inspector], [BatchRefresher], [Semaphore], [FenceRaiser]).
// A driver implements the ones its backend supports; dlock finds them by
// type assertion.
//
// # Writing a driver
//
// The smallest driver the contract allows, a [Locker] with no optional
// capability (its four methods), is conformance's ExampleRun (the whole
// file conformance/example_run_test.go, shown in the conformance package's
// documentation): it is what a backend must at least do, and its test is
// how a driver runs the suite. Package memdriver is the reference
// implementation of a full driver package: it is short, it follows every
// rule below, and a new driver package is best started from a copy of it.
// A driver package:
//
//   - implements [Locker] on an unexported type that is safe for
//     concurrent use, and asserts each capability it has, so that the
//     compiler checks it (below);
//   - exports New, which returns the portable *dlock.Locker that
//     applications use, and a clearly named function that returns the
//     bare [Locker] for wrappers and tests (redisdriver.New and NewDriver,
//     redlock.New and NewDriver, memdriver's New and Store.Driver); it
//     imports package dlock for that and for dlock.Options, nothing else:
//     the errors, URL helpers and registration a driver needs are here;
//   - declares its URL scheme as a constant and registers it from init.
//     [Register] panics when a scheme is registered twice: two drivers
//     claiming one scheme is a programming error, found at start-up.
//
// For example:
//
//	const Scheme = "mydb"
//
//	func init() { driver.Register(Scheme, Open) }
//
//	var (
//		_ driver.Locker    = (*locker)(nil)
//		_ driver.Inspector = (*locker)(nil)
//	)
//
// # URLs
//
// dlock.Open parses a URL strictly with [ParseURL] and hands it to the
// scheme's [OpenFunc], with the common parameters ([CommonParams]: ttl,
// renew, drift, owner, fencing) set to the values the Locker uses. The OpenFunc
// refuses parameters it does not know with [UnknownParams], declares its
// documented ones with [PublicParams] (from init) so that [Redacted] shows
// their values, reads hosts with [HostList], and shows a URL only through
// [Redacted] or [RedactURL]. Errors from a client that may quote a
// password pass through [Scrub] with [Password]: a password never appears
// in an error or a log.
//
// # Errors
//
// A driver wraps these sentinels with %w and adds context; callers test
// them with errors.Is, never ==:
//
//   - [ErrNotHeld] from Refresh, Release and RaiseFence when the token does
//     not hold the key. A held key is not an error for Acquire: it reports
//     Acquired false, with the holder's TTL when it knows it.
//   - [ErrUnavailable] only when the operation surely was not applied
//     (connection refused, server loading, failover in progress).
//   - An outcome that is unknown (sent, then a timeout, a dropped
//     connection, or a context that ended in flight) wraps
//     [ErrOutcomeUnknown], or has a Timeout() bool method as net errors
//     do. [OutcomeUnknown] is the one test of it, shared by the drivers and
//     dlock, which undoes such an Acquire at once.
//   - [ErrInvalid] for a bad argument, option or URL, found before any
//     I/O.
//   - [ErrClosed] for calls after Close.
//
// # Request fields a driver may ignore
//
// Key, Token and TTL are the contract. A driver may ignore
// [Request.NoFence], which only allows it to skip the work of fences and
// return 0, and keeps Owner if it implements [Inspector], which reports
// it.
//
// # Capabilities
//
// Everything beyond [Locker] is optional, and dlock works without it:
//
//   - [Notifier] wakes waiters at a release; without it, they wake at the
//     holder's expiry (Result.HolderTTL) or their backoff.
//   - [Handoff] queues waiters ([Handoff.AcquireQueued]) and hands a
//     released key to the first one still subscribed, within the release,
//     telling it the grant's fence and the queued attempt it was made on,
//     from whose send time the waiter counts its lease (why that is safe
//     is argued once, at [Handoff]); without it, a woken waiter makes
//     another attempt.
//   - [Inspector] reports a key's holder, for dlock.Locker.Holders and the
//     dlock status command; without it they report errors.ErrUnsupported.
//   - [BatchRefresher] renews many leases in one round trip; without it,
//     dlock renews them one by one ([RefreshBatch]).
//   - [Semaphore] holds a key for up to N tokens at once (dlock's
//     LeaseOptions.Limit); without it, semaphores report
//     errors.ErrUnsupported. A quorum driver refuses it: a majority of
//     per-node semaphores does not bound the holders.
//   - [FenceRaiser] is what a quorum driver (redlock) needs of its nodes
//     to keep fences increasing, and nothing else uses. (Package redlock
//     defines the other thing it needs of its nodes, proposed fence
//     floors, as redlock.FloorAcquirer: no other driver uses floors.)
//
// # Testing a driver
//
// A driver's tests call conformance.Run with a harness that makes clients
// of one backend; cases of capabilities the driver lacks are skipped, and
// a failing case names the rule it checks:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, func(t *testing.T) *conformance.Harness {
//			backend := startBackend(t) // fresh or shared: keys are unique per case
//			return &conformance.Harness{
//				NewDriver: func(t *testing.T) driver.Locker { return mydriver.NewDriver(backend.Client(t)) },
//			}
//		})
//	}
//
// Harness.Partitioned, when set, lets the suite cut a client off and
// check that a lease is lost before the backend frees the key;
// conformance.Faulty gives it to any driver. The conformance package's own
// tests run the suite against a driver that implements only [Locker]: a map
// under a mutex, in about a hundred lines.
//
// # Wrapping drivers
//
// A driver that wraps others (a fault injector, a quorum over nodes)
// cannot tell when it is compiled which capabilities it can offer: that
// depends on the drivers it wraps, and Go cannot implement an interface
// conditionally. The rule is one for every capability: such a driver may
// implement a capability's interface, and where it cannot offer the
// capability, each of the interface's methods returns an error wrapping
// errors.ErrUnsupported, at once, without I/O, and every time. An error
// wrapping errors.ErrUnsupported from a capability's method means that the
// capability is absent, as a failed type assertion does: dlock then polls
// instead of subscribing (or subscribes without handoff), reports the
// error from Locker.Holders,
// [RefreshBatch] refreshes request by request, and conformance.Run skips
// the capability's cases. A wrapper never pretends instead (a subscription
// that never fires, a holder it made up). [RefreshBatch] is the helper a
// wrapper answers with; redlock and conformance.FaultyDriver follow the
// rule, also for interfaces defined outside this package
// (redlock.FloorAcquirer).
//
// # What the contract cannot express yet
//
// The etcd driver found these; a backend that needs one works around it
// today:
//
//   - TTL resolution: etcd leases count whole seconds (and have a
//     minimum), so a TTL is rounded up, and Result.HolderTTL is as coarse.
//   - A queue whose give-up must be confirmed needs cancel(ctx) error, and
//     a grant it hands off may need an opaque handle in [Turn], not only
//     the fence and the attempt.
//   - Refresh and Release take the key and token only: a backend that keeps
//     a handle per grant (an etcd lease ID) must find it again from them,
//     where an opaque handle in [Result] would be passed back.
//   - Fence floors (redlock.FloorAcquirer) do not fit a backend whose fence
//     is a revision it assigns itself.
package driver
