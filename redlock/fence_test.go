package redlock_test

import (
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redlock"
)

// TestRedisFenceAfterMajorityRestart: a client whose clock runs 30s ahead
// proposes its clock as the fence floor; then a majority of nodes restarts
// empty and stays out longer than the TTL, as the docs advise. The next
// lease, from a client whose clock is right, must still get a larger
// fence: nodes never trust a floor alone, so no fence ran ahead of their
// clocks by more than the TTL.
func TestRedisFenceAfterMajorityRestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	nodes := startRedis(t, 3)
	// A restarted node's first call dials, says HELLO and loads the
	// script: on a loaded machine, more than the default 100 ms.
	d := nodes.driver(t, &redlock.Options{NodeTimeout: 300 * time.Millisecond})
	defer d.Close()
	const key, ttl = "fast-clock", time.Second

	fast := driver.Request{Key: key, Token: rand(), TTL: ttl, Owner: "fast"}
	res, err := d.(redlock.FloorAcquirer).AcquireFloor(ctx, fast, uint64(time.Now().Add(30*time.Second).UnixMicro()))
	if err != nil || !res.Acquired {
		t.Fatalf("fast client's Acquire = %+v, %v", res, err)
	}
	if err := d.Release(ctx, key, fast.Token); err != nil {
		t.Fatal(err)
	}
	nodes[0].Restart(t)
	nodes[1].Restart(t)
	time.Sleep(ttl + ttl/2) // the restarted nodes stay out longer than the TTL

	ontime := driver.Request{Key: key, Token: rand(), TTL: ttl, Owner: "on time"}
	next, err := d.Acquire(ctx, ontime)
	if err != nil || !next.Acquired {
		t.Fatalf("on-time client's Acquire = %+v, %v", next, err)
	}
	defer d.Release(ctx, key, ontime.Token)
	if next.Fence <= res.Fence {
		t.Errorf("fence went backwards after a majority restarted empty: %d after %d (%v less)",
			next.Fence, res.Fence, time.Duration(res.Fence-next.Fence)*time.Microsecond)
	}
}
