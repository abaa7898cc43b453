// Package linearize checks with porcupine that dlock's leases behave as one
// lock per key with fences, on every backend, and that no key is left held
// when nobody holds a lease of it.
//
// A run ([Run], [Check]) drives a [Workload] on a [Backend]: goroutines
// share dlock.Lockers, each over its own driver wrapped in a [Recorder],
// and mix try-acquires and waits whose contexts end during the call (1–5
// ms), longer waits that queue and are handed keys, refreshes with new
// TTLs and releases, on a few keys, while Lockers are closed under their
// waiting callers and replaced. The history of every driver call, and of
// what every dlock call returned, must be explainable by a lock that one
// token at a time holds, whose fences increase, that hands a released key
// to a waiter only while the waiter's call runs, and that no token of a
// call holds once the call returned without it (no phantom holder). Once
// every Locker is closed, the backend is asked which keys are still held:
// none may be (for a quorum backend, none on a majority of its nodes;
// minority leftovers are logged).
//
// The Recorder forwards every capability package dlock uses, handoff
// included, and leaves their channels untouched, so that the program
// checked is the one users run; [Model] and [History.Operations] say what
// a history may contain. The checker's own tests run it over drivers
// broken on purpose and require it to fail.
//
// # Adding a backend
//
// A backend is one function that starts what it needs (with cleanup on
// t) and returns a Backend: a constructor of drivers, and a probe of keys
// left held ([HeldOn] makes one from the backend's nodes' Inspectors). A
// quorum backend constructs its drivers with [Backend.NewQuorum] instead,
// from nodes that the run wraps in Recorders: a quorum may answer busy
// for a key that nobody holds, held on a minority of nodes each by other
// tokens, and only the nodes' histories tell when it may ([Input.Excused]).
// A test then calls Check for each workload:
//
//	func TestLinearizableMyDB(t *testing.T) {
//		b := Backend{NewDriver: …, Held: HeldOn(probe)}
//		t.Run("Owned", func(t *testing.T) { Check(t, b, Owned) })
//		t.Run("Shared", func(t *testing.T) { Check(t, b, Shared) })
//	}
//
// It lives in the tests module, so the checker is no dependency of the
// library. Tests that need Redis start redis-server processes through
// internal/redistest, and the etcd runs start etcd processes through
// etcddriver/etcdtest (DLOCK_REQUIRE_REDIS=1 makes a missing server of
// either a failure).
package linearize
