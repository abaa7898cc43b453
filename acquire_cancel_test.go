package dlock_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// newSpy returns a spy over a client of store.
func newSpy(store *memdriver.Store) *spy {
	return &spy{memClient: store.Driver().(memClient)}
}

// waitOpts make a waiter that sleeps an hour between attempts: only a
// release notification or a handoff wakes it sooner.
var waitOpts = &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Hour, Retry: dlock.ExponentialBackoff(time.Hour, time.Hour)}}

// TestCancelDuringSubscribe: a waiter whose ctx ends while it subscribes
// returns the busy answer and ctx.Err(), and leaves nothing behind: the
// next waiter is handed the key at the holder's release.
func TestCancelDuringSubscribe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		release := hold(t, store.Driver(), "k")
		d := newSpy(store)
		subscribing := make(chan struct{})
		d.subscribe = func(ctx context.Context, _, _ string) error {
			close(subscribing)
			<-ctx.Done()
			return ctx.Err()
		}
		a := dlock.New(d, waitOpts)
		defer a.Close()
		actx, cancel := context.WithCancel(t.Context())
		aGot := goAcquire(actx, a, "k")
		<-subscribing
		cancel()
		r := <-aGot
		if !errors.Is(r.err, context.Canceled) || !errors.Is(r.err, dlock.ErrNotAcquired) || r.lease != nil {
			t.Fatalf("Acquire cancelled while subscribing = %v, %v; want ErrNotAcquired and context.Canceled", r.lease, r.err)
		}
		b := store.Locker(waitOpts)
		defer b.Close()
		bGot := goAcquire(t.Context(), b, "k")
		synctest.Wait()
		start := time.Now()
		release()
		rb := <-bGot
		if rb.err != nil {
			t.Fatal(rb.err)
		}
		defer rb.lease.Release(t.Context())
		if d := rb.at.Sub(start); d != 0 {
			t.Errorf("the next waiter got the key %v after the release; want at once", d)
		}
	})
}

// TestCancelDuringUndo: a waiter whose ctx ends while it undoes an
// attempt of unknown outcome (which was granted) finishes the undo before
// it returns: the key is free then, and the error is ctx's.
func TestCancelDuringUndo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		d := newSpy(store)
		undoing, gate := make(chan struct{}), make(chan struct{})
		d.acquire = func(_ context.Context, _ driver.Request, _ driver.Queued, next func() (driver.Result, error)) (driver.Result, error) {
			next()
			return driver.Result{}, timeout{}
		}
		d.release = func(ctx context.Context, _, _ string, next func() error) error {
			close(undoing)
			<-gate
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return next()
		}
		l := dlock.New(d, waitOpts)
		defer l.Close()
		ctx, cancel := context.WithCancel(t.Context())
		got := goAcquire(ctx, l, "k")
		<-undoing
		cancel()
		synctest.Wait()
		close(gate)
		r := <-got
		if !errors.Is(r.err, context.Canceled) || errors.Is(r.err, dlock.ErrNotAcquired) || r.lease != nil {
			t.Fatalf("Acquire cancelled during the undo = %v, %v; want context.Canceled, not ErrNotAcquired", r.lease, r.err)
		}
		mustBeFree(t, store, "k", "the undo must run to its end on a detached context")
	})
}

// TestSlotWaiterCancelledLeavesNothing: a semaphore's waiter cancelled
// while sleeping returns ErrNotAcquired and ctx.Err(); the waiter behind
// it is woken by the next release.
func TestSlotWaiterCancelledLeavesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		sem := &dlock.LeaseOptions{Limit: 2}
		h := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Hour}})
		defer h.Close()
		var held []*dlock.Lease
		for range 2 {
			le, err := h.Acquire(t.Context(), "s", sem)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, le)
		}
		a := store.Locker(waitOpts)
		defer a.Close()
		actx, cancel := context.WithCancel(t.Context())
		aGot := make(chan error, 1)
		go func() {
			_, err := a.Acquire(actx, "s", sem)
			aGot <- err
		}()
		b := store.Locker(waitOpts)
		defer b.Close()
		bGot := make(chan acquiredLease, 1)
		go func() {
			le, err := b.Acquire(t.Context(), "s", sem)
			bGot <- acquiredLease{le, err, time.Now()}
		}()
		synctest.Wait()
		cancel()
		if err := <-aGot; !errors.Is(err, context.Canceled) || !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("cancelled slot waiter = %v; want ErrNotAcquired and context.Canceled", err)
		}
		start := time.Now()
		if err := held[0].Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		r := <-bGot
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.lease.Release(t.Context())
		if d := r.at.Sub(start); d != 0 {
			t.Errorf("the other slot waiter got a slot %v after the release; want at once", d)
		}
		hs, err := h.Holders(t.Context(), "s")
		if err != nil || len(hs) != 2 {
			t.Errorf("Holders = %v, %v; want 2: the remaining slot and the woken waiter's", hs, err)
		}
		held[1].Release(t.Context())
	})
}

// TestCloseEndsSlotWaiters: Close returns a waiting semaphore acquire
// with ErrClosed and ErrNotAcquired at once, and frees the slots its
// leases held.
func TestCloseEndsSlotWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		sem := &dlock.LeaseOptions{Limit: 2}
		l := store.Locker(waitOpts)
		for range 2 {
			if _, err := l.Acquire(t.Context(), "s", sem); err != nil {
				t.Fatal(err)
			}
		}
		got := make(chan error, 1)
		go func() {
			_, err := l.Acquire(t.Context(), "s", sem)
			got <- err
		}()
		synctest.Wait()
		start := time.Now()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-got; !errors.Is(err, dlock.ErrClosed) || !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("waiting slot Acquire after Close = %v; want ErrClosed and ErrNotAcquired", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("the waiter ended %v after Close began; want at once", d)
		}
		hs, _, err := store.Driver().(driver.Semaphore).InspectSlots(t.Context(), "s")
		if err != nil || len(hs) != 0 {
			t.Errorf("slots after Close = %v, %v; want none held", hs, err)
		}
	})
}

// TestDoReleasesOnCancel: Do whose ctx ends while fn runs releases the
// key before it returns.
func TestDoReleasesOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		l := store.Locker(waitOpts)
		defer l.Close()
		ctx, cancel := context.WithCancel(t.Context())
		err := l.Do(ctx, "k", &dlock.LeaseOptions{Limit: 3}, func(ctx context.Context, _ *dlock.Lease) error {
			cancel()
			<-ctx.Done()
			return ctx.Err()
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Do = %v; want fn's context.Canceled", err)
		}
		hs, _, err := store.Driver().(driver.Semaphore).InspectSlots(t.Context(), "k")
		if err != nil || len(hs) != 0 {
			t.Errorf("slots after Do = %v, %v; want none held", hs, err)
		}
	})
}

// waiterA marks the context of waiter a, for hooks.
type waiterA struct{}

// TestCancelledAfterWakePassesTurn: a waiter woken alone for its turn
// whose ctx ends while the attempt the wake-up called for is in flight,
// and which never reached the backend, passes the turn on: the next
// waiter gets the key at once, not at its backoff.
func TestCancelledAfterWakePassesTurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		inflight := make(chan struct{})
		attempts := 0
		drv := &turns{Locker: &hooked{Locker: store.Driver(), hook: func(ctx context.Context, _ driver.Request, _ driver.Queued, acquire func() (driver.Result, error)) (driver.Result, error) {
			if ctx.Value(waiterA{}) == nil {
				return acquire()
			}
			if attempts++; attempts != 3 {
				return acquire()
			}
			// The attempt after the wake-up: cut short by ctx before
			// it is sent.
			close(inflight)
			<-ctx.Done()
			return driver.Result{}, ctx.Err()
		}}}
		holder, a, b := dlock.New(drv, waitOpts), dlock.New(drv, waitOpts), dlock.New(drv, waitOpts)
		defer holder.Close()
		defer a.Close()
		defer b.Close()
		lease, err := holder.TryAcquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		actx, cancel := context.WithCancel(context.WithValue(t.Context(), waiterA{}, true))
		aGot := goAcquire(actx, a, "k")
		synctest.Wait() // a is queued first
		bGot := goAcquire(t.Context(), b, "k")
		synctest.Wait()
		start := time.Now()
		lease.Release(t.Context()) // wakes a alone
		<-inflight
		cancel()
		if r := <-aGot; !errors.Is(r.err, context.Canceled) {
			t.Fatalf("a's Acquire = %v, %v; want context.Canceled", r.lease, r.err)
		}
		r := <-bGot
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.lease.Release(t.Context())
		if d := r.at.Sub(start); d != 0 {
			t.Errorf("b got the key %v after the release; want at once: a, woken for its turn, must pass it on", d)
		}
	})
}

// TestCloseWithOwnWaiter: Close of a Locker that holds a key and has a
// waiter queued for it releases the lease, which hands the key to that
// waiter; the waiter, ended by Close, releases the grant, so the next
// waiter, of another Locker, gets the key at once.
func TestCloseWithOwnWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		l := store.Locker(waitOpts)
		if _, err := l.TryAcquire(t.Context(), "k", nil); err != nil {
			t.Fatal(err)
		}
		own := goAcquire(t.Context(), l, "k")
		synctest.Wait()
		other := store.Locker(waitOpts)
		defer other.Close()
		next := goAcquire(t.Context(), other, "k")
		synctest.Wait()
		start := time.Now()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if r := <-own; !errors.Is(r.err, dlock.ErrClosed) || r.lease != nil {
			t.Errorf("the closed Locker's waiter = %v, %v; want ErrClosed", r.lease, r.err)
		}
		r := <-next
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.lease.Release(t.Context())
		if d := r.at.Sub(start); d != 0 {
			t.Errorf("the other Locker's waiter got the key %v after Close; want at once", d)
		}
		mustHold(t, store.Driver().(driver.Inspector), "k", r.lease.Fence(), "the other waiter's lease")
	})
}

// TestCancelAsGrantArrives: a waiter's ctx ends at the instant the
// release hands it the key, many times over: whichever it sees first, it
// either returns the lease or releases the grant, and the waiter behind it
// gets the key at once.
func TestCancelAsGrantArrives(t *testing.T) {
	for range 50 {
		synctest.Test(t, func(t *testing.T) {
			store := memdriver.NewStore()
			release := hold(t, store.Driver(), "k")
			a, b := store.Locker(waitOpts), store.Locker(waitOpts)
			defer a.Close()
			defer b.Close()
			actx, cancel := context.WithCancel(t.Context())
			aGot := goAcquire(actx, a, "k")
			synctest.Wait()
			bGot := goAcquire(t.Context(), b, "k")
			synctest.Wait()
			start := time.Now()
			release()
			cancel()
			ra := <-aGot
			if ra.err == nil {
				if err := ra.lease.Release(t.Context()); err != nil {
					t.Fatalf("a's lease: Release = %v", err)
				}
			} else if !errors.Is(ra.err, context.Canceled) {
				t.Fatalf("a's Acquire = %v; want a lease or context.Canceled", ra.err)
			}
			rb := <-bGot
			if rb.err != nil {
				t.Fatal(rb.err)
			}
			defer rb.lease.Release(t.Context())
			if d := rb.at.Sub(start); d != 0 {
				t.Fatalf("b got the key %v after a left; want at once", d)
			}
		})
	}
}
