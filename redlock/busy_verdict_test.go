package redlock_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redlock"
)

// slowAcquires delays a node's k-th Acquire by delays[k], and those past
// the end not at all.
type slowAcquires struct {
	driver.Locker
	delays []time.Duration
	n      atomic.Int32
}

func (s *slowAcquires) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	if k := int(s.n.Add(1)) - 1; k < len(s.delays) {
		time.Sleep(s.delays[k])
	}
	return s.Locker.Acquire(ctx, req)
}

// TestBusyWhileEarlierAttemptRuns: a caller attempts a held key again with
// its token (as dlock's waiting and the conformance suite's awaitFree do)
// while its last attempt's call on node 2 has not returned, so the driver
// does not ask node 2 (see its ordering of one token's calls). Node 0
// answers busy at once, node 1 50ms later: the attempt must wait for node
// 1 and answer busy. Node 1's answer decides between busy and failed, so
// the short wait that only refines the holder's expiry hint once the key
// is known busy must not cut it off: that would fail the attempt with a
// QuorumError ("not asked: an earlier acquire of this token there has not
// returned") while a majority of nodes is up and busy.
func TestBusyWhileEarlierAttemptRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		c := newMemCluster(3)
		holder := driver.Request{Key: "k", Token: rand(), TTL: time.Minute, Owner: "holder"}
		for i := range 3 {
			if res, err := c.raw(t, i).Acquire(ctx, holder); err != nil || !res.Acquired {
				t.Fatalf("node %d: Acquire = %+v, %v", i, res, err)
			}
		}
		nodes := []driver.Locker{
			c.raw(t, 0),
			&slowAcquires{Locker: c.raw(t, 1), delays: []time.Duration{0, 50 * time.Millisecond}},
			&slowAcquires{Locker: c.raw(t, 2), delays: []time.Duration{100 * time.Millisecond}},
		}
		d, err := redlock.NewDriver(nodes, &redlock.Options{DisableFencing: true, NodeTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		req := driver.Request{Key: "k", Token: rand(), TTL: time.Minute, Owner: "waiter"}
		if res, err := d.Acquire(ctx, req); err != nil || res.Acquired {
			t.Fatalf("first attempt = %+v, %v; want busy (nodes 0 and 1 busy)", res, err)
		}
		time.Sleep(10 * time.Millisecond) // node 2's acquire is still on its way
		start := time.Now()
		res, err := d.Acquire(ctx, req)
		if err != nil || res.Acquired {
			t.Fatalf("attempt while node 2 answers the first = %+v, %v (after %v); want busy, from nodes 0 and 1",
				res, err, time.Since(start))
		}
		if took := time.Since(start); took != 50*time.Millisecond {
			t.Errorf("attempt took %v; want it to wait for node 1's answer, 50ms", took)
		}
	})
}
