package redlock_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock/conformance"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redlock"
)

// slowRelease delays Release only: a node whose answer to a release comes
// last.
type slowRelease struct {
	driver.Locker
	delay time.Duration
}

func (s slowRelease) Release(ctx context.Context, key, token string) error {
	time.Sleep(s.delay)
	return s.Locker.Release(ctx, key, token)
}

// TestReleaseReturnsAtMajority: with one node of three answering releases
// 50ms late, Release returns with the majority's answers, at once (on
// fake time), as redsync's fail-fast mode does; it waited for the slow
// node, or at least 10ms for it. The slow node's release still lands,
// and an acquire of the key right after, with another node partitioned,
// waits for it on the slow node and is granted by the two nodes left,
// instead of finding the slow node still held by the released token.
func TestReleaseReturnsAtMajority(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		c := newMemCluster(3)
		partitioned := conformance.Faulty(c.raw(t, 0))
		d, err := redlock.NewDriver([]driver.Locker{partitioned, c.raw(t, 1), slowRelease{c.raw(t, 2), 50 * time.Millisecond}},
			&redlock.Options{DisableFencing: true, NodeTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		req := driver.Request{Key: "k", Token: rand(), TTL: time.Minute, Owner: "first"}
		if res, err := d.Acquire(ctx, req); err != nil || !res.Acquired {
			t.Fatalf("Acquire = %+v, %v", res, err)
		}
		synctest.Wait() // every node granted
		start := time.Now()
		if err := d.Release(ctx, req.Key, req.Token); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took != 0 {
			t.Errorf("Release took %v; want it to return with the majority, before the node 50ms slow", took)
		}
		if _, held := c.holder(t, 2, "k"); !held {
			t.Fatal("slow node free when Release returned; the test needs its release still running")
		}
		partitioned.Partition()
		defer partitioned.Heal()
		next := driver.Request{Key: "k", Token: rand(), TTL: time.Minute, Owner: "next"}
		start = time.Now()
		if res, err := d.Acquire(ctx, next); err != nil || !res.Acquired {
			t.Fatalf("Acquire right after Release, node 0 partitioned = %+v, %v; want granted by nodes 1 and 2", res, err)
		}
		if took := time.Since(start); took != 50*time.Millisecond {
			t.Errorf("Acquire right after Release took %v; want it to wait for the slow node's release, 50ms", took)
		}
		if h, _ := c.holder(t, 2, "k"); h.Owner != next.Owner {
			t.Errorf("slow node held by owner %q; want %q", h.Owner, next.Owner)
		}
	})
}

// TestAcquireAfterUndoWaitsForIt: a failed attempt returns once its undos
// answered, or the node timeout (100ms) passed, and the rest goes on in
// the background. Node 0 answers acquires and applies releases 60ms late:
// the failed attempt's undo there, sent once its acquire answered, at
// 60ms, lands at 120ms, after the attempt returned. The holder then frees
// its nodes and node 2 refuses calls: the next attempt on this driver,
// with another token, must wait for the undo on node 0 and be granted by
// nodes 0 and 1, rather than find node 0 still held by the failed attempt
// and answer busy while nobody holds the key.
func TestAcquireAfterUndoWaitsForIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		c := newMemCluster(3)
		holder := driver.Request{Key: "k", Token: rand(), TTL: time.Minute, Owner: "holder"}
		for _, i := range []int{1, 2} {
			if res, err := c.raw(t, i).Acquire(ctx, holder); err != nil || !res.Acquired {
				t.Fatalf("node %d: Acquire = %+v, %v", i, res, err)
			}
		}
		refusing := conformance.Faulty(c.raw(t, 2))
		d, err := redlock.NewDriver([]driver.Locker{slowNode{c.raw(t, 0), 60 * time.Millisecond, 60 * time.Millisecond}, c.raw(t, 1), refusing},
			&redlock.Options{DisableFencing: true, NodeTimeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		failed := driver.Request{Key: "k", Token: rand(), TTL: time.Minute, Owner: "failed"}
		if res, err := d.Acquire(ctx, failed); err != nil || res.Acquired {
			t.Fatalf("attempt with nodes 1 and 2 held = %+v, %v; want busy", res, err)
		}
		if h, held := c.holder(t, 0, "k"); !held || h.Owner != failed.Owner {
			t.Fatalf("node 0 held = %v by %q when the failed attempt returned; the test needs its undo still running", held, h.Owner)
		}
		for _, i := range []int{1, 2} {
			if err := c.raw(t, i).Release(ctx, holder.Key, holder.Token); err != nil {
				t.Fatalf("node %d: Release = %v", i, err)
			}
		}
		refusing.Refuse()
		next := driver.Request{Key: "k", Token: rand(), TTL: time.Minute, Owner: "next"}
		start := time.Now()
		if res, err := d.Acquire(ctx, next); err != nil || !res.Acquired {
			t.Fatalf("attempt of a free key, node 2 refusing = %+v, %v; want granted by nodes 0 and 1 once the undo on node 0 landed", res, err)
		}
		if took := time.Since(start); took != 80*time.Millisecond {
			t.Errorf("attempt took %v; want it to wait for the undo on node 0, 20ms, and node 0's answer, 60ms", took)
		}
	})
}
