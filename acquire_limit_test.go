package dlock_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// TestLimitMismatchCause: callers that disagree on a key's limit get
// ErrLimitMismatch at once, also when waiting, with the driver's cause in
// the chain (the other kind of key, or the other limit), never
// ErrNotAcquired.
func TestLimitMismatchCause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		l := store.Locker(waitOpts)
		defer l.Close()
		if _, err := l.Acquire(t.Context(), "lock", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Acquire(t.Context(), "sem", &dlock.LeaseOptions{Limit: 2}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			key   string
			limit int
			cause error
		}{
			{"lock", 2, driver.ErrWrongKind},
			{"sem", 1, driver.ErrWrongKind},
			{"sem", 0, driver.ErrWrongKind},
			{"sem", 3, driver.ErrLimitMismatch},
		} {
			start := time.Now()
			_, err := l.Acquire(t.Context(), c.key, &dlock.LeaseOptions{Limit: c.limit})
			if !errors.Is(err, dlock.ErrLimitMismatch) || !errors.Is(err, c.cause) || errors.Is(err, dlock.ErrNotAcquired) || errors.Is(err, dlock.ErrUnavailable) {
				t.Errorf("Acquire(%q, Limit %d) = %v; want ErrLimitMismatch with the driver's %v, not ErrNotAcquired or ErrUnavailable", c.key, c.limit, err, c.cause)
			}
			if d := time.Since(start); d != 0 {
				t.Errorf("Acquire(%q, Limit %d) returned after %v; want at once (misuse is not retried)", c.key, c.limit, d)
			}
		}
	})
}

// TestLimitMismatchWhileWaiting: a lock's waiter that finds, at its next
// attempt, the key taken as a semaphore ends with ErrLimitMismatch and
// leaves its subscription and queue place behind.
func TestLimitMismatchWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		release := hold(t, store.Driver(), "k")
		w := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Hour, Retry: dlock.ExponentialBackoff(time.Second, time.Second)}})
		defer w.Close()
		got := goAcquire(t.Context(), w, "k")
		synctest.Wait()
		// The release hands the key to the waiter: it must hold it.
		release()
		r := <-got
		if r.err != nil {
			t.Fatal(r.err)
		}
		if err := r.lease.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		// Now a semaphore takes the key while a lock waits.
		s := store.Locker(waitOpts)
		defer s.Close()
		slot, err := s.Acquire(t.Context(), "k", &dlock.LeaseOptions{Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Acquire(t.Context(), "k", nil); !errors.Is(err, dlock.ErrLimitMismatch) {
			t.Errorf("lock Acquire on a semaphore's key = %v; want ErrLimitMismatch", err)
		}
		slot.Release(t.Context())
		mustBeFree(t, store, "k", "nothing may hold the key after every caller returned")
	})
}

// TestHoldersSortedByFence: Holders reports a semaphore's holders lowest
// fence first, whatever order the driver reports them in, with the
// limit.
func TestHoldersSortedByFence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		d := newSpy(store)
		d.inspectSlot = func(hs []driver.Holder) []driver.Holder {
			slices.Reverse(hs)
			return hs
		}
		l := dlock.New(d, waitOpts)
		defer l.Close()
		var fences []uint64
		for range 3 {
			le, err := l.Acquire(t.Context(), "s", &dlock.LeaseOptions{Limit: 3})
			if err != nil {
				t.Fatal(err)
			}
			fences = append(fences, le.Fence())
		}
		hs, err := l.Holders(t.Context(), "s")
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, h := range hs {
			got = append(got, h.Fence)
			if h.Limit != 3 {
				t.Errorf("holder %+v: Limit %d; want 3", h, h.Limit)
			}
		}
		if !slices.Equal(got, fences) {
			t.Errorf("Holders fences %v; want %v, lowest first", got, fences)
		}
		if hs, err := l.Holders(t.Context(), "free"); err != nil || len(hs) != 0 {
			t.Errorf("Holders of a free key = %v, %v; want none", hs, err)
		}
	})
}

// TestLockerLimitCallLimitOne: a Locker whose default Limit is 3 takes a
// lock when a call says Limit 1, and a slot when it says nothing.
func TestLockerLimitCallLimitOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		l := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Hour, Limit: 3}})
		defer l.Close()
		lock, err := l.Acquire(t.Context(), "lock", &dlock.LeaseOptions{Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Release(t.Context())
		if hs, err := l.Holders(t.Context(), "lock"); err != nil || len(hs) != 1 || hs[0].Limit != 1 {
			t.Errorf("Holders of a Limit 1 key = %v, %v; want one holder of a lock (Limit 1)", hs, err)
		}
		slot, err := l.Acquire(t.Context(), "sem", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer slot.Release(t.Context())
		if hs, err := l.Holders(t.Context(), "sem"); err != nil || len(hs) != 1 || hs[0].Limit != 3 {
			t.Errorf("Holders of a key of the Locker's Limit = %v, %v; want one holder of a slot of 3", hs, err)
		}
	})
}

// TestElectionLimitLeaders: with Limit 2, two of three candidates lead
// at once, and the third leads when one of them returns.
func TestElectionLimitLeaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		l := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}})
		defer l.Close()
		opts := &dlock.ElectionOptions{Lease: &dlock.LeaseOptions{Limit: 2}}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		leading := make(chan int, 3)
		stop := [3]chan struct{}{make(chan struct{}), make(chan struct{}), make(chan struct{})}
		done := make(chan error, 3)
		for i := range 3 {
			e := dlock.NewElection(l, "elect", opts)
			go func() {
				done <- e.Run(ctx, func(ctx context.Context, _ *dlock.Lease) error {
					leading <- i
					select {
					case <-stop[i]:
					case <-ctx.Done():
					}
					return nil
				})
			}()
			synctest.Wait()
		}
		if n := len(leading); n != 2 {
			t.Fatalf("%d candidates lead; want 2", n)
		}
		first := <-leading
		<-leading
		close(stop[first])
		if err := <-done; err != nil {
			t.Errorf("Run of a leader whose lead returned = %v; want nil", err)
		}
		synctest.Wait()
		if n := len(leading); n != 1 {
			t.Fatalf("%d candidates took the freed slot; want 1", n)
		}
		cancel()
		for range 2 {
			<-done
		}
	})
}

// TestSlotWaitersNotQueued: a semaphore's waiter is never queued for a
// handoff: its attempts carry no Wait or attempt number, it subscribes
// without a token, and a release wakes it.
func TestSlotWaitersNotQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		d := newSpy(store)
		var queued []driver.Queued
		var tokens []string
		d.acquire = func(_ context.Context, req driver.Request, q driver.Queued, next func() (driver.Result, error)) (driver.Result, error) {
			queued = append(queued, q)
			return next()
		}
		d.subscribe = func(_ context.Context, _, token string) error {
			tokens = append(tokens, token)
			return nil
		}
		sem := &dlock.LeaseOptions{Limit: 2}
		h := store.Locker(waitOpts)
		defer h.Close()
		var held []*dlock.Lease
		for range 2 {
			le, err := h.Acquire(t.Context(), "s", sem)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, le)
		}
		w := dlock.New(d, waitOpts)
		defer w.Close()
		got := make(chan error, 1)
		go func() {
			le, err := w.Acquire(t.Context(), "s", sem)
			if err == nil {
				le.Release(t.Context())
			}
			got <- err
		}()
		synctest.Wait()
		held[0].Release(t.Context())
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		held[1].Release(t.Context())
		for _, q := range queued {
			if q != (driver.Queued{}) {
				t.Errorf("slot attempt queued with %+v; want not queued", q)
			}
		}
		if len(tokens) != 1 || tokens[0] != "" {
			t.Errorf("slot waiter subscribed with tokens %q; want once, without one", tokens)
		}
	})
}

// TestSlotWaiterWokenAtExpiry: a semaphore's waiter whose holders vanish
// without releasing gets a slot when the first one expires, as the busy
// answer reported, not at its backoff.
func TestSlotWaiterWokenAtExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		slots := store.Driver().(driver.Semaphore)
		const ttl = 10 * time.Second
		for i, d := range []time.Duration{ttl, 2 * ttl} {
			req := driver.Request{Key: "s", Token: fmt.Sprint("vanished-", i), TTL: d}
			if res, err := slots.AcquireSlot(t.Context(), req, 2); err != nil || !res.Acquired {
				t.Fatalf("AcquireSlot = %+v, %v", res, err)
			}
		}
		l := store.Locker(waitOpts)
		defer l.Close()
		start := time.Now()
		le, err := l.Acquire(t.Context(), "s", &dlock.LeaseOptions{Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer le.Release(t.Context())
		if d := time.Since(start); d != ttl {
			t.Errorf("the waiter got a slot after %v; want %v, when the first slot expired", d, ttl)
		}
	})
}
