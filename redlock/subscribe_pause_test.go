package redlock_test

import (
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redlock"
)

// TestSubscribeAtMajoritySpeed: with one node of three paused (CLIENT
// PAUSE), Subscribe returns once the two others subscribed, and their
// releases wake the subscriber. It waited for the paused node until its
// client's read timeout (2s; a go-redis read ignores its context's
// cancellation), not the node timeout of 100ms, and a waiting Acquire
// made no attempt meanwhile.
func TestSubscribeAtMajoritySpeed(t *testing.T) {
	t.Parallel()
	nodes := startRedis(t, 3)
	d := nodes.driverOver(t, nodes.clients(t), &redlock.Options{NodeTimeout: 100 * time.Millisecond, DisableFencing: true})
	defer d.Close()
	ctx := t.Context()
	if err := nodes[2].Client(t).Do(ctx, "CLIENT", "PAUSE", "3000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ch, cancel, err := d.(driver.Notifier).Subscribe(ctx, "k")
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Subscribe with one node paused = %v", err)
	}
	defer cancel()
	if limit := time.Second; took > limit {
		t.Errorf("Subscribe took %v with one node paused; want the majority's answer and the node timeout at most, under %v", took, limit)
	}
	req := driver.Request{Key: "k", Token: rand(), TTL: time.Minute}
	if res, err := d.Acquire(ctx, req); err != nil || !res.Acquired {
		t.Fatalf("Acquire = %+v, %v", res, err)
	}
	if err := d.Release(ctx, req.Key, req.Token); err != nil {
		t.Fatalf("Release = %v", err)
	}
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Error("no wakeup after a release on the two subscribed nodes")
	}
}
