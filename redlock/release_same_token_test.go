package redlock

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// TestConcurrentReleasesOfOneToken: two Releases of one token at once (a
// dlock.Locker's Close frees the leases it ends while their holders call
// Lease.Release, which frees them once more) answer as two releases on
// one server would: exactly one frees the lock, the other finds it not
// held. The token holds the key on nodes 0 and 1 of 3, a majority; the
// second Release is queued while the first has queued its call on node
// 0. If each Release reached its nodes in an order of its own, the first
// would free node 0 and the second node 1, each would find the rest free,
// and both would answer ErrNotHeld of a lock the token held until they
// ran.
func TestConcurrentReleasesOfOneToken(t *testing.T) {
	ctx := t.Context()
	var nodes []driver.Locker
	for range 3 {
		d := memdriver.NewStore().Driver()
		nodes = append(nodes, d)
	}
	l, err := newLocker(nodes, nil, &Options{DisableFencing: true, NodeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	req := driver.Request{Key: "k", Token: "0123456789abcdef0123456789abcdef", TTL: time.Minute, Owner: "holder"}
	for _, i := range []int{0, 1} {
		if res, err := nodes[i].Acquire(ctx, req); err != nil || !res.Acquired {
			t.Fatalf("node %d: Acquire = %+v, %v", i, res, err)
		}
	}

	var second sync.WaitGroup
	var secondErr error
	secondQueued := make(chan int, len(nodes))
	var started atomic.Bool
	l.testHookQueued = func(token string, node int) {
		if started.Swap(true) {
			secondQueued <- node
			return
		}
		// The first Release has queued a call: start the second, and
		// let the first go on once the second is queued on every node.
		second.Go(func() { secondErr = l.Release(ctx, req.Key, req.Token) })
		for range nodes {
			<-secondQueued
		}
	}
	firstErr := l.Release(ctx, req.Key, req.Token)
	second.Wait()

	freed := 0
	for i, err := range []error{firstErr, secondErr} {
		switch {
		case err == nil:
			freed++
		case !errors.Is(err, driver.ErrNotHeld):
			t.Errorf("Release %d = %v; want nil or ErrNotHeld", i+1, err)
		}
	}
	if freed != 1 {
		t.Errorf("of two Releases of a token that held nodes 0 and 1, %d answered that they freed it (first: %v; second: %v); want exactly one, the other ErrNotHeld",
			freed, firstErr, secondErr)
	}
	for i, n := range nodes {
		if _, held, err := n.(driver.Inspector).Inspect(ctx, req.Key); err != nil || held {
			t.Errorf("node %d: held = %v, %v after both Releases; want free", i, held, err)
		}
	}
}
