package redisdriver_test

import (
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
)

// TestHandoffMixedFencing: waiters with and without fences on one key. A
// fences-off holder's release hands the key to the fenced waiter queued,
// with a fence above every fence the key had before (the holder's is 0);
// a fences-off waiter queued after it is served next, by its release.
func TestHandoffMixedFencing(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	noFence := &dlock.LeaseOptions{DisableFencing: true, Retry: noPolling, TTL: 30 * time.Second}
	fenced := &dlock.LeaseOptions{Retry: noPolling, TTL: 30 * time.Second}
	first := newLocker(t, s.Options(), nil)
	holder := newLocker(t, s.Options(), nil)
	a := newLocker(t, s.Options(), nil)
	b := newLocker(t, s.Options(), nil)
	ctx := testCtx(t)
	key := uniqueKey("handoff/mixed/")
	earlier, err := first.TryAcquire(ctx, key, fenced)
	if err != nil {
		t.Fatal(err)
	}
	if err := earlier.Release(ctx); err != nil {
		t.Fatal(err)
	}
	held, err := holder.TryAcquire(ctx, key, noFence)
	if err != nil {
		t.Fatal(err)
	}
	gotA := goAcquire(ctx, a, key, fenced)
	waitAttemptQueued(t, admin, key)
	gotB := goAcquire(ctx, b, key, noFence)
	// b subscribes, on the same channel as a: wait for a second listener.
	for {
		m, err := admin.PubSubNumSub(ctx, "dlock:{"+key+"}:released").Result()
		if err != nil {
			t.Fatal(err)
		}
		if m["dlock:{"+key+"}:released"] >= 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := held.Release(ctx); err != nil {
		t.Fatal(err)
	}
	la := <-gotA
	if la.err != nil {
		t.Fatalf("fenced waiter: %v", la.err)
	}
	if la.lease.Fence() <= earlier.Fence() {
		t.Errorf("handed-off fence %d is not above the key's earlier fence %d", la.lease.Fence(), earlier.Fence())
	}
	select {
	case lb := <-gotB:
		t.Fatalf("the fences-off waiter got the key (%v) while the fenced one holds it", lb.err)
	default:
	}
	releasedA := time.Now()
	if err := la.lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	lb := <-gotB
	if lb.err != nil {
		t.Fatalf("fences-off waiter: %v", lb.err)
	}
	defer lb.lease.Release(ctx)
	if d := lb.at.Sub(releasedA); d > 5*time.Second {
		t.Errorf("the fences-off waiter took the key %v after the release: not woken by it", d)
	}
}

// TestHandoffFencesOffWaiterQueued: a waiter with fencing off is queued
// like any other (its busy attempt runs the fenced script), so that a
// release hands it the key in turn instead of waking every subscriber;
// its lease still has fence 0.
func TestHandoffFencesOffWaiterQueued(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	noFence := &dlock.LeaseOptions{DisableFencing: true, Retry: noPolling, TTL: 30 * time.Second}
	holder := newLocker(t, s.Options(), nil)
	waiter := newLocker(t, s.Options(), nil)
	ctx := testCtx(t)
	key := uniqueKey("handoff/fences-off/")
	held, err := holder.TryAcquire(ctx, key, noFence)
	if err != nil {
		t.Fatal(err)
	}
	got := goAcquire(ctx, waiter, key, noFence)
	waitAttemptQueued(t, admin, key)
	if err := held.Release(ctx); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.err != nil {
		t.Fatalf("fences-off waiter: %v", a.err)
	}
	defer a.lease.Release(ctx)
	if f := a.lease.Fence(); f != 0 {
		t.Errorf("fences-off lease has fence %d, want 0", f)
	}
	if _, _, _, owner := lockValue(t, ctx, admin, key); owner != a.lease.Owner() {
		t.Errorf("the key is held by %q, want the waiter %q", owner, a.lease.Owner())
	}
}
