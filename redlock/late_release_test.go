package redlock_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock/conformance"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/dlock-go/dlock/redlock"
)

// lateRelease, once on, delays each Release request on its way to the
// node and applies it even if the caller gave up meanwhile, as a release
// stuck in a retransmitted packet reaches the server after the client's
// deadline, and after requests sent later on another connection.
type lateRelease struct {
	driver.Locker
	on     *atomic.Bool
	delay  time.Duration
	landed *sync.WaitGroup
}

func (d lateRelease) Release(ctx context.Context, key, token string) error {
	if !d.on.Load() {
		return d.Locker.Release(ctx, key, token)
	}
	out := make(chan error, 1)
	d.landed.Go(func() {
		time.Sleep(d.delay)
		out <- d.Locker.Release(context.WithoutCancel(ctx), key, token)
	})
	select {
	case err := <-out:
		return err
	case <-ctx.Done():
		return fmt.Errorf("release: %w", ctx.Err())
	}
}

// TestLateUndoNeverFreesLaterGrant: a busy attempt is undone on a node
// that granted it, and that undo's outcome is unknown (its call gave up,
// the request may still land). A later attempt with the same token, as
// dlock's waiting Acquire makes after a busy answer, must not count that
// node: the late undo would free it under the lease. On three real
// nodes, the undo landed after the second attempt was granted by node 0
// and that node, and the token held a single node of three, which left
// the other two to another token.
func TestLateUndoNeverFreesLaterGrant(t *testing.T) {
	t.Parallel()
	nodes := startRedis(t, 3)
	clients := nodes.clients(t)
	raw := make([]driver.Locker, len(clients))
	for i, c := range clients {
		raw[i] = redisdriver.NewDriver(c, nil)
	}
	var on atomic.Bool
	var landed sync.WaitGroup
	// Node 1's calls hang while it is partitioned, until Close ends them.
	faulty := conformance.Faulty(raw[1])
	d, err := redlock.NewDriver([]driver.Locker{
		raw[0],
		faulty,
		lateRelease{raw[2], &on, 300 * time.Millisecond, &landed},
	}, &redlock.Options{NodeTimeout: 50 * time.Millisecond, DisableFencing: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := t.Context()
	const key = "late-undo"
	// Another holder has nodes 0 and 1; node 2 is free.
	other := rand()
	direct := func(i int) driver.Locker {
		d := redisdriver.NewDriver(nodes[i].Client(t), nil)
		t.Cleanup(func() { d.Close() })
		return d
	}
	for _, i := range []int{0, 1} {
		if res, err := direct(i).Acquire(ctx, driver.Request{Key: key, Token: other, TTL: time.Minute}); err != nil || !res.Acquired {
			t.Fatalf("node %d: Acquire = %+v, %v", i, res, err)
		}
	}
	on.Store(true)
	req := driver.Request{Key: key, Token: rand(), TTL: time.Minute, Owner: "waiter"}
	if res, err := d.Acquire(ctx, req); err != nil || res.Acquired {
		t.Fatalf("first Acquire = %+v, %v; want busy", res, err)
	}
	// The undo on node 2 gives up after the node timeout; its request is
	// still on its way.
	time.Sleep(150 * time.Millisecond)
	on.Store(false)
	// The holder leaves; node 1 is cut off.
	for _, i := range []int{0, 1} {
		if err := direct(i).Release(ctx, key, other); err != nil {
			t.Fatalf("node %d: Release = %v", i, err)
		}
	}
	faulty.Partition()
	res, err := d.Acquire(ctx, req)
	landed.Wait()
	if err != nil || !res.Acquired {
		return // refusing is safe
	}
	held := 0
	for i := range 3 {
		if h, ok := nodes.holds(t, i, key); ok && h.Owner == req.Owner {
			held++
		}
	}
	if held < 2 {
		t.Errorf("second attempt granted, but once the first attempt's undo landed its token held %d node(s) of 3; a majority is 2", held)
	}
}
