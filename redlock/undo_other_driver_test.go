package redlock_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock/conformance"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redlock"
)

// TestBusyAttemptLeavesNoNodeHeld: driver A's attempt of a held key
// (nodes 1 and 2 held) is granted by node 0, whose releases land 50ms
// late, and answers busy. Once the holder left and node 2 refuses calls,
// driver B, another client of the same nodes, tries the key: nobody holds
// it, and nodes 0 and 1 must grant it. When A answered busy at nodes 1
// and 2's answers, its undo on node 0 was still running, and B found node
// 0 held by A's undone token, node 1 free and node 2 failing: busy, while
// nobody held the key (tests/linearize: "the key is free; then acquire(X)
// → busy cannot be explained"). A failed attempt returns once its undos
// answered.
func TestBusyAttemptLeavesNoNodeHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		c := newMemCluster(3)
		holder := driver.Request{Key: "k", Token: rand(), TTL: time.Minute, Owner: "holder"}
		for _, i := range []int{1, 2} {
			if res, err := c.raw(t, i).Acquire(ctx, holder); err != nil || !res.Acquired {
				t.Fatalf("node %d: Acquire = %+v, %v", i, res, err)
			}
		}
		opts := &redlock.Options{DisableFencing: true, NodeTimeout: time.Second}
		a, err := redlock.NewDriver([]driver.Locker{slowRelease{c.raw(t, 0), 50 * time.Millisecond}, c.raw(t, 1), c.raw(t, 2)}, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		refusing := conformance.Faulty(c.raw(t, 2))
		b, err := redlock.NewDriver([]driver.Locker{c.raw(t, 0), c.raw(t, 1), refusing}, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		start := time.Now()
		if res, err := a.Acquire(ctx, driver.Request{Key: "k", Token: rand(), TTL: time.Minute, Owner: "failed"}); err != nil || res.Acquired {
			t.Fatalf("A: attempt with nodes 1 and 2 held = %+v, %v; want busy", res, err)
		}
		if took := time.Since(start); took != 50*time.Millisecond {
			t.Errorf("A: busy attempt took %v; want it to return once its undo on node 0 landed, 50ms", took)
		}
		for _, i := range []int{1, 2} {
			if err := c.raw(t, i).Release(ctx, holder.Key, holder.Token); err != nil {
				t.Fatalf("node %d: Release = %v", i, err)
			}
		}
		refusing.Refuse()
		if res, err := b.Acquire(ctx, driver.Request{Key: "k", Token: rand(), TTL: time.Minute, Owner: "next"}); err != nil || !res.Acquired {
			t.Errorf("B: attempt of a free key, node 2 refusing = %+v, %v; want granted by nodes 0 and 1", res, err)
		}
	})
}
