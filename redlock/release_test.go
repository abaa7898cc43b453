package redlock_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redlock"
)

// TestReleaseWithEndedContextAwaitsLateGrants: a Release whose context
// has already ended (a deferred release after the caller's deadline, a
// shutdown) must still wait for the acquire's late answers, within the
// node timeout, so that a grant landing after Acquire returned does not
// leave a node locked after Release returned nil.
func TestReleaseWithEndedContextAwaitsLateGrants(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newMemCluster(3)
		d, err := redlock.NewDriver([]driver.Locker{c.raw(t, 0), c.raw(t, 1), slowAcquire{c.raw(t, 2), 50 * time.Millisecond}},
			&redlock.Options{DisableFencing: true, NodeTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		req := driver.Request{Key: "k", Token: rand(), TTL: time.Minute}
		if res, err := d.Acquire(t.Context(), req); err != nil || !res.Acquired {
			t.Fatalf("Acquire = %+v, %v", res, err)
		}
		ended, cancel := context.WithCancel(t.Context())
		cancel()
		if err := d.Release(ended, req.Key, req.Token); err != nil {
			t.Fatalf("Release with an ended context: %v", err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if h, held := c.holder(t, 2, "k"); held {
			t.Errorf("slow node still held by %+v after Release returned nil: the release overtook its late grant", h)
		}
	})
}

// countRefresh counts the refresh requests a node receives, alone or in
// batches.
type countRefresh struct {
	driver.Locker
	n atomic.Int32
}

func (c *countRefresh) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	c.n.Add(1)
	return c.Locker.Refresh(ctx, key, token, ttl)
}

func (c *countRefresh) RefreshBatch(ctx context.Context, reqs []driver.RefreshRequest) []error {
	c.n.Add(int32(len(reqs)))
	return driver.RefreshBatch(ctx, c.Locker, reqs)
}

// TestRefreshBatchSendsOnlyValid: a request that RefreshBatch reports
// invalid (a TTL that the drift allowance uses up) is not sent to the
// nodes, where it would reset the lock's TTL to almost nothing.
func TestRefreshBatchSendsOnlyValid(t *testing.T) {
	ctx := t.Context()
	c := newMemCluster(3)
	nodes := []*countRefresh{{Locker: c.raw(t, 0)}, {Locker: c.raw(t, 1)}, {Locker: c.raw(t, 2)}}
	d, err := redlock.NewDriver([]driver.Locker{nodes[0], nodes[1], nodes[2]}, &redlock.Options{DisableFencing: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var reqs []driver.RefreshRequest
	for _, key := range []string{"valid", "invalid"} {
		r := driver.Request{Key: key, Token: rand(), TTL: time.Minute}
		if res, err := d.Acquire(ctx, r); err != nil || !res.Acquired {
			t.Fatalf("Acquire = %+v, %v", res, err)
		}
		c.awaitHeld(t, key) // the last node's grant may land after Acquire returned
		reqs = append(reqs, driver.RefreshRequest{Key: key, Token: r.Token, TTL: time.Minute})
	}
	reqs[1].TTL = time.Millisecond // drift (TTL/100 + 2ms) leaves nothing
	errs := d.(driver.BatchRefresher).RefreshBatch(ctx, reqs)
	if errs[0] != nil || errs[1] == nil {
		t.Fatalf("RefreshBatch = %v; want the valid request refreshed and the invalid one refused", errs)
	}
	d.Close() // waits for the node calls after the majority's answers
	for i, n := range nodes {
		if got := n.n.Load(); got != 1 {
			t.Errorf("node %d received %d refresh requests; want 1, the valid one", i, got)
		}
	}
	for i := range 3 {
		if h, held := c.holder(t, i, "invalid"); !held || h.TTL < time.Second {
			t.Errorf("node %d: the lock of the invalid request is %+v, %v; want it untouched", i, h, held)
		}
	}
}

// TestEmptyTokenRefused: an empty token is refused with ErrInvalid before
// any I/O; with it anyone could release a lock taken with "".
func TestEmptyTokenRefused(t *testing.T) {
	ctx := t.Context()
	c := newMemCluster(3)
	nodes := []*countRefresh{{Locker: c.raw(t, 0)}, {Locker: c.raw(t, 1)}, {Locker: c.raw(t, 2)}}
	d, err := redlock.NewDriver([]driver.Locker{nodes[0], nodes[1], nodes[2]}, &redlock.Options{DisableFencing: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if res, err := d.Acquire(ctx, driver.Request{Key: "k", TTL: time.Minute}); !errors.Is(err, dlock.ErrInvalid) {
		t.Errorf("Acquire with an empty token = %+v, %v; want ErrInvalid", res, err)
	}
	for i := range 3 {
		if h, held := c.holder(t, i, "k"); held {
			t.Errorf("node %d holds %+v after an Acquire with an empty token", i, h)
		}
	}
	if err := d.Refresh(ctx, "k", "", time.Minute); !errors.Is(err, dlock.ErrInvalid) {
		t.Errorf("Refresh with an empty token: %v; want ErrInvalid", err)
	}
	if err := d.Release(ctx, "k", ""); !errors.Is(err, dlock.ErrInvalid) {
		t.Errorf("Release with an empty token: %v; want ErrInvalid", err)
	}
	errs := d.(driver.BatchRefresher).RefreshBatch(ctx, []driver.RefreshRequest{{Key: "k", TTL: time.Minute}})
	if !errors.Is(errs[0], dlock.ErrInvalid) {
		t.Errorf("RefreshBatch with an empty token: %v; want ErrInvalid", errs[0])
	}
	for i, n := range nodes {
		if got := n.n.Load(); got != 0 {
			t.Errorf("node %d received %d refreshes with an empty token", i, got)
		}
	}
}

// TestRefreshNeverOutlivesDeadline: a refresh that returned with the
// majority's confirmations goes on for the slower nodes, but never past
// its context's deadline (a lease's deadline, for the renewer): past it
// the lease is lost, and a refresh landing then would hold its key.
func TestRefreshNeverOutlivesDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newMemCluster(3)
		d, fs := c.driver(t, &redlock.Options{NodeTimeout: time.Second, DisableFencing: true})
		req := driver.Request{Key: "k", Token: rand(), TTL: time.Minute}
		if res, err := d.Acquire(t.Context(), req); err != nil || !res.Acquired {
			t.Fatalf("Acquire = %+v, %v", res, err)
		}
		time.Sleep(10 * time.Second)
		fs[2].SetLatency(100 * time.Millisecond)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		if err := d.Refresh(ctx, req.Key, req.Token, time.Minute); err != nil {
			t.Fatalf("Refresh = %v", err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if h, _ := c.holder(t, 2, "k"); h.TTL > 50*time.Second {
			t.Errorf("slow node refreshed after the refresh's deadline: TTL %v, want about 49s", h.TTL)
		}
		if h, _ := c.holder(t, 0, "k"); h.TTL < 58*time.Second {
			t.Errorf("node 0 not refreshed: TTL %v", h.TTL)
		}
	})
}
