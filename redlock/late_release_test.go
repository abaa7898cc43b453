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

// TestLateReleaseNeverFreesLaterGrant: a release of a token whose outcome
// is unknown on a node (its call gave up; the request may still land)
// keeps later acquires with that token off that node: a grant there would
// count for the lease, and the late release would then free it under the
// lease. Two ways to such a release, each followed by a second attempt
// with the same token while node 1 is cut off:
//   - Undo: a busy attempt's undo on the node that granted it; dlock's
//     waiting Acquire retries a busy attempt with its token, and the busy
//     answer does not say that the undo's outcome is unknown;
//   - Release: a Release that a majority answered; dlock retries with the
//     token after undoing an attempt when that Release succeeds.
//
// On three real nodes, the release landed after the second attempt was
// granted by node 0 and that node, and the token held a single node of
// three, which left the other two to another token.
func TestLateReleaseNeverFreesLaterGrant(t *testing.T) {
	for _, tc := range []struct {
		name string
		undo bool // the late release is a busy attempt's undo, not a Release
	}{
		{"Undo", true},
		{"Release", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lateReleaseThenAcquire(t, tc.undo)
		})
	}
}

func lateReleaseThenAcquire(t *testing.T, undo bool) {
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
	const key = "late-release"
	direct := func(i int) driver.Locker {
		d := redisdriver.NewDriver(nodes[i].Client(t), nil)
		t.Cleanup(func() { d.Close() })
		return d
	}
	req := driver.Request{Key: key, Token: rand(), TTL: time.Minute, Owner: "waiter"}
	if undo {
		// Another holder has nodes 0 and 1; node 2 is free.
		other := rand()
		for _, i := range []int{0, 1} {
			if res, err := direct(i).Acquire(ctx, driver.Request{Key: key, Token: other, TTL: time.Minute}); err != nil || !res.Acquired {
				t.Fatalf("node %d: Acquire = %+v, %v", i, res, err)
			}
		}
		on.Store(true)
		if res, err := d.Acquire(ctx, req); err != nil || res.Acquired {
			t.Fatalf("first Acquire = %+v, %v; want busy", res, err)
		}
		// The undo on node 2 gives up after the node timeout; its
		// request is still on its way.
		time.Sleep(150 * time.Millisecond)
		on.Store(false)
		// The holder leaves.
		for _, i := range []int{0, 1} {
			if err := direct(i).Release(ctx, key, other); err != nil {
				t.Fatalf("node %d: Release = %v", i, err)
			}
		}
	} else {
		if res, err := d.Acquire(ctx, req); err != nil || !res.Acquired {
			t.Fatalf("first Acquire = %+v, %v", res, err)
		}
		for i := range 3 { // every node's grant is in
			for _, held := nodes.holds(t, i, key); !held; _, held = nodes.holds(t, i, key) {
				time.Sleep(time.Millisecond)
			}
		}
		on.Store(true)
		if err := d.Release(ctx, key, req.Token); err != nil {
			t.Fatalf("Release = %v", err)
		}
		// The release on node 2 gives up after the node timeout; its
		// request is still on its way.
		time.Sleep(150 * time.Millisecond)
		on.Store(false)
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
		t.Errorf("second attempt granted, but once the late release landed its token held %d node(s) of 3; a majority is 2", held)
	}
}
