package redisdriver_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
)

// TestSemaphoreLimitMismatchCause: on Redis, callers that disagree on a
// key's limit (a lock's 1 against a semaphore's 2, 3 against 2) get
// ErrLimitMismatch at once, also when they would wait, with the driver's
// cause in the chain; Holders reports the slots lowest fence first.
func TestSemaphoreLimitMismatchCause(t *testing.T) {
	s := redistest.Shared(t)
	l := newLocker(t, s.Options(), &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 10 * time.Second}})
	ctx := testCtx(t)
	sem := &dlock.LeaseOptions{Limit: 2}
	var fences []uint64
	for range 2 {
		le, err := l.Acquire(ctx, "limit/sem", sem)
		if err != nil {
			t.Fatal(err)
		}
		defer le.Release(ctx)
		fences = append(fences, le.Fence())
	}
	lock, err := l.Acquire(ctx, "limit/lock", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release(ctx)
	for _, c := range []struct {
		key   string
		limit int
		cause error
	}{
		{"limit/sem", 1, driver.ErrWrongKind},
		{"limit/sem", 3, driver.ErrLimitMismatch},
		{"limit/lock", 2, driver.ErrWrongKind},
	} {
		start := time.Now()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		le, err := l.Acquire(wctx, c.key, &dlock.LeaseOptions{Limit: c.limit})
		cancel()
		if le != nil {
			le.Release(ctx)
		}
		if !errors.Is(err, dlock.ErrLimitMismatch) || !errors.Is(err, c.cause) || errors.Is(err, dlock.ErrNotAcquired) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Acquire(%q, Limit %d) = %v; want ErrLimitMismatch with the driver's %v, at once", c.key, c.limit, err, c.cause)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Acquire(%q, Limit %d) took %v; misuse is not retried", c.key, c.limit, d)
		}
	}
	hs, err := l.Holders(ctx, "limit/sem")
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, h := range hs {
		got = append(got, h.Fence)
		if h.Limit != 2 {
			t.Errorf("holder %+v: Limit %d; want 2", h, h.Limit)
		}
	}
	if !slices.Equal(got, fences) {
		t.Errorf("Holders fences %v; want %v, lowest first", got, fences)
	}
}

// TestSemaphoreCancelInFlightUndone: a slot attempt whose ctx ends while
// it is in flight (its reply delayed by a slow network) lands on the
// server; the acquire undoes it with a slot release before it returns, so
// no slot is held when every caller has returned.
func TestSemaphoreCancelInFlightUndone(t *testing.T) {
	s := redistest.Shared(t)
	px := redistest.NewProxy(t, s.Addr())
	o := s.Options()
	o.Addr = px.Addr()
	l := newLocker(t, o, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 10 * time.Second}})
	ctx := testCtx(t)
	// Connect first, so that the attempt below is sent at once.
	if _, err := l.Holders(ctx, "cancel/slot"); err != nil {
		t.Fatal(err)
	}
	px.Latency(300 * time.Millisecond)
	actx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	le, err := l.Acquire(actx, "cancel/slot", &dlock.LeaseOptions{Limit: 2})
	cancel()
	if le != nil {
		le.Release(ctx)
		t.Fatalf("Acquire returned a lease within a deadline shorter than a round trip")
	}
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, dlock.ErrNotAcquired) {
		t.Errorf("Acquire = %v; want DeadlineExceeded, not ErrNotAcquired", err)
	}
	px.Heal()
	hs, err := l.Holders(ctx, "cancel/slot")
	if err != nil || len(hs) != 0 {
		t.Errorf("Holders after the acquire returned = %v, %v; want none: the landed attempt must be undone", hs, err)
	}
}

// TestSemaphoreCancelledWaiterWakesNext: of two slot waiters, the first is
// cancelled while it waits; a holder's release then wakes the second at
// once, and no slot is left held by the cancelled one.
func TestSemaphoreCancelledWaiterWakesNext(t *testing.T) {
	s := redistest.Shared(t)
	opts := &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 30 * time.Second, Retry: dlock.ExponentialBackoff(time.Minute, time.Minute)}}
	h := newLocker(t, s.Options(), opts)
	a := newLocker(t, s.Options(), opts)
	b := newLocker(t, s.Options(), opts)
	ctx := testCtx(t)
	sem := &dlock.LeaseOptions{Limit: 2}
	var held []*dlock.Lease
	for range 2 {
		le, err := h.Acquire(ctx, "wake/sem", sem)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, le)
	}
	defer held[1].Release(ctx)
	actx, cancel := context.WithCancel(ctx)
	aGot := make(chan error, 1)
	go func() {
		le, err := a.Acquire(actx, "wake/sem", sem)
		if le != nil {
			le.Release(ctx)
		}
		aGot <- err
	}()
	bGot := make(chan error, 1)
	var bLease *dlock.Lease
	go func() {
		var err error
		bLease, err = b.Acquire(ctx, "wake/sem", sem)
		bGot <- err
	}()
	time.Sleep(300 * time.Millisecond) // no event says both are subscribed
	cancel()
	if err := <-aGot; !errors.Is(err, context.Canceled) || !errors.Is(err, dlock.ErrNotAcquired) {
		t.Fatalf("cancelled slot waiter = %v; want ErrNotAcquired and context.Canceled", err)
	}
	start := time.Now()
	if err := held[0].Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-bGot:
		if err != nil {
			t.Fatal(err)
		}
		defer bLease.Release(ctx)
	case <-time.After(10 * time.Second):
		t.Fatal("the second slot waiter was not woken by the release")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the second slot waiter got a slot %v after the release; want within a few round trips", d)
	}
	hs, err := h.Holders(ctx, "wake/sem")
	if err != nil || len(hs) != 2 {
		t.Errorf("Holders = %v, %v; want the remaining slot and the woken waiter's", hs, err)
	}
}

// TestSemaphoreDeadProxyUnavailable: a slot waiter whose backend goes
// away while it waits (a dead proxy) ends at its deadline with
// ErrUnavailable and DeadlineExceeded, not ErrNotAcquired; once the
// network is back, only the holder's slots are held.
func TestSemaphoreDeadProxyUnavailable(t *testing.T) {
	s := redistest.Shared(t)
	px := redistest.NewProxy(t, s.Addr())
	o := s.Options()
	o.Addr = px.Addr()
	h := newLocker(t, s.Options(), &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 30 * time.Second}})
	w := newLocker(t, o, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 30 * time.Second, Retry: dlock.ExponentialBackoff(50*time.Millisecond, 100*time.Millisecond)}})
	ctx := testCtx(t)
	sem := &dlock.LeaseOptions{Limit: 2}
	var fences []uint64
	for range 2 {
		le, err := h.Acquire(ctx, "dead/sem", sem)
		if err != nil {
			t.Fatal(err)
		}
		defer le.Release(ctx)
		fences = append(fences, le.Fence())
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	got := make(chan error, 1)
	go func() {
		le, err := w.Acquire(wctx, "dead/sem", sem)
		if le != nil {
			le.Release(ctx)
		}
		got <- err
	}()
	time.Sleep(300 * time.Millisecond) // waiting: no event says so
	px.Disconnect()
	err := <-got
	if errors.Is(err, dlock.ErrNotAcquired) || !errors.Is(err, dlock.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiter whose backend went away = %v; want ErrUnavailable and DeadlineExceeded, not ErrNotAcquired", err)
	}
	px.Heal()
	hs, err := h.Holders(ctx, "dead/sem")
	if err != nil || len(hs) != 2 || hs[0].Fence != fences[0] || hs[1].Fence != fences[1] {
		t.Errorf("Holders = %v, %v; want the holder's two slots alone, fences %v", hs, err, fences)
	}
}
