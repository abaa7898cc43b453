package redlock_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redlock"
)

// lostFirstAcquire loses a node's first Acquire on its way, as a request
// on a connection that a partition cut silently: the call hears nothing
// until its context ends, and the node never sees it. Later calls, on
// other connections, go through.
type lostFirstAcquire struct {
	driver.Locker
	lost atomic.Bool
}

func (d *lostFirstAcquire) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	if !d.lost.Swap(true) {
		<-ctx.Done()
		return driver.Result{}, fmt.Errorf("acquire lost on its way: %w", ctx.Err())
	}
	return d.Locker.Acquire(ctx, req)
}

// TestLateUndoBehindLostAcquireDoesNotBarNode: a busy attempt's acquire
// on node 2 is lost (its call listens for the validity window, nearly the
// TTL), so its undo there waits behind it. Node 2 is otherwise up: its
// new connections answer. Once the key is free and node 1 is down, the
// driver's next acquire of the key, with a new token, has nodes 0 and 2,
// a majority, up and free, and must be granted. Waiting on node 2 for the
// late undo, which itself waits for the lost acquire, made node 2 count
// as not answering within the node timeout for the TTL.
func TestLateUndoBehindLostAcquireDoesNotBarNode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		c := newMemCluster(3)
		d0, d1 := c.raw(t, 0), c.raw(t, 1)
		down := &atomic.Bool{}
		nodes := []driver.Locker{d0, refusing{d1, down}, &lostFirstAcquire{Locker: c.raw(t, 2)}}
		d, err := redlock.NewDriver(nodes, &redlock.Options{DisableFencing: true, NodeTimeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		const key = "k"
		holder := driver.Request{Key: key, Token: rand(), TTL: time.Minute, Owner: "holder"}
		for _, i := range []int{0, 1} {
			if res, err := c.raw(t, i).Acquire(ctx, holder); err != nil || !res.Acquired {
				t.Fatalf("node %d: Acquire = %+v, %v", i, res, err)
			}
		}
		ttl := 10 * time.Second
		if res, err := d.Acquire(ctx, driver.Request{Key: key, Token: rand(), TTL: ttl, Owner: "first"}); err != nil || res.Acquired {
			t.Fatalf("first attempt = %+v, %v; want busy (nodes 0 and 1 held)", res, err)
		}
		for _, i := range []int{0, 1} {
			if err := c.raw(t, i).Release(ctx, key, holder.Token); err != nil {
				t.Fatalf("node %d: Release = %v", i, err)
			}
		}
		down.Store(true)
		time.Sleep(time.Second) // well past the node timeout, well within the TTL
		start := time.Now()
		res, err := d.Acquire(ctx, driver.Request{Key: key, Token: rand(), TTL: ttl, Owner: "second"})
		if err != nil || !res.Acquired {
			t.Errorf("attempt with nodes 0 and 2 up and free, node 1 down = %+v, %v (after %v); want granted", res, err, time.Since(start))
		}
	})
}

// refusing answers every call with driver.ErrUnavailable while down is
// set, as a node that refuses connections does.
type refusing struct {
	driver.Locker
	down *atomic.Bool
}

func (d refusing) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	if d.down.Load() {
		return driver.Result{}, fmt.Errorf("refused: %w", driver.ErrUnavailable)
	}
	return d.Locker.Acquire(ctx, req)
}

// slowNode is a slow node: it applies an Acquire at once and its reply
// arrives acquire later; a Release reaches it release after it is sent,
// and its reply at once.
type slowNode struct {
	driver.Locker
	acquire, release time.Duration
}

func (s slowNode) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	res, err := s.Locker.Acquire(ctx, req)
	time.Sleep(s.acquire)
	return res, err
}

func (s slowNode) Release(ctx context.Context, key, token string) error {
	time.Sleep(s.release)
	return s.Locker.Release(context.WithoutCancel(ctx), key, token)
}

// TestLateUndosDoNotConvoy: a caller polls a held key, each attempt with
// a new token (dlock's TryAcquire), while node 2 answers every call in
// 60ms, within the node timeout. Each busy attempt returns at nodes 0 and
// 1's answers and leaves its acquire and undo running on node 2. The next
// attempt's acquire there must not wait for that undo, which waits for
// its own acquire, which waits for the undo before: a convoy that grows
// by two of node 2's round trips per attempt, so that long after the
// polling ended node 2 still has not answered, and, with node 1 down, the
// key stays out of reach while nodes 0 and 2 are up and free.
func TestLateUndosDoNotConvoy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		c := newMemCluster(3)
		down := &atomic.Bool{}
		nodes := []driver.Locker{c.raw(t, 0), refusing{c.raw(t, 1), down}, slowNode{c.raw(t, 2), 60 * time.Millisecond, 60 * time.Millisecond}}
		d, err := redlock.NewDriver(nodes, &redlock.Options{DisableFencing: true, NodeTimeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		const key = "k"
		holder := driver.Request{Key: key, Token: rand(), TTL: time.Minute, Owner: "holder"}
		for _, i := range []int{0, 1} {
			if res, err := c.raw(t, i).Acquire(ctx, holder); err != nil || !res.Acquired {
				t.Fatalf("node %d: Acquire = %+v, %v", i, res, err)
			}
		}
		for k := range 20 {
			if res, err := d.Acquire(ctx, driver.Request{Key: key, Token: rand(), TTL: time.Minute, Owner: "poller"}); err != nil || res.Acquired {
				t.Fatalf("attempt %d = %+v, %v; want busy (nodes 0 and 1 held)", k, res, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		for _, i := range []int{0, 1} {
			if err := c.raw(t, i).Release(ctx, key, holder.Token); err != nil {
				t.Fatalf("node %d: Release = %v", i, err)
			}
		}
		down.Store(true)
		time.Sleep(time.Second) // every call of the polling has had ten of node 2's round trips
		start := time.Now()
		res, err := d.Acquire(ctx, driver.Request{Key: key, Token: rand(), TTL: time.Minute, Owner: "next"})
		if err != nil || !res.Acquired {
			t.Errorf("attempt with nodes 0 and 2 up and free, node 1 down, 1s after the polling ended = %+v, %v (after %v); want granted", res, err, time.Since(start))
		}
	})
}

// TestLateUndoNeverAnswersBusy: a failed attempt waits for its undos for
// the node timeout, and an attempt waits on a node for this driver's undo
// of an earlier attempt there for at most half the node timeout (see
// TestLateUndosDoNotConvoy), and is then sent; if the node answers busy
// while the undo has not returned, it may be held by the undone token
// alone, which nobody holds, and the attempt must not answer busy. Node 2
// (node timeout 100ms) replies to an acquire 30ms after applying it, and
// applies a release 150ms after it is sent: the first attempt's acquire
// holds it from 0ms, its undo, sent at 30ms, frees it at 180ms, and the
// first attempt returns at 100ms; the key is free of any holder from
// 110ms, and the second attempt, then, with node 1 down, finds node 0 free
// and, at 160ms, node 2 held by the undone token.
func TestLateUndoNeverAnswersBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		c := newMemCluster(3)
		down := &atomic.Bool{}
		nodes := []driver.Locker{c.raw(t, 0), refusing{c.raw(t, 1), down}, slowNode{c.raw(t, 2), 30 * time.Millisecond, 150 * time.Millisecond}}
		d, err := redlock.NewDriver(nodes, &redlock.Options{DisableFencing: true, NodeTimeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		const key = "k"
		holder := driver.Request{Key: key, Token: rand(), TTL: time.Minute, Owner: "holder"}
		for _, i := range []int{0, 1} {
			if res, err := c.raw(t, i).Acquire(ctx, holder); err != nil || !res.Acquired {
				t.Fatalf("node %d: Acquire = %+v, %v", i, res, err)
			}
		}
		start := time.Now()
		if res, err := d.Acquire(ctx, driver.Request{Key: key, Token: rand(), TTL: time.Minute, Owner: "first"}); err != nil || res.Acquired {
			t.Fatalf("first attempt = %+v, %v; want busy (nodes 0 and 1 held)", res, err)
		}
		time.Sleep(110*time.Millisecond - time.Since(start))
		for _, i := range []int{0, 1} {
			if err := c.raw(t, i).Release(ctx, key, holder.Token); err != nil {
				t.Fatalf("node %d: Release = %v", i, err)
			}
		}
		down.Store(true)
		if h, held := c.holder(t, 2, key); !held || h.Owner != "first" {
			t.Fatalf("node 2 held = %v by %q at 110ms; the test needs the first attempt's grant there, not yet undone", held, h.Owner)
		}
		res, err := d.Acquire(ctx, driver.Request{Key: key, Token: rand(), TTL: time.Minute, Owner: "second"})
		if err == nil && !res.Acquired {
			t.Errorf("attempt of a key nobody holds = busy; want a failure: node 2 is held only by an attempt this driver is undoing")
		}
	})
}
