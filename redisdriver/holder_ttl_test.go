package redisdriver_test

import (
	"testing"

	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
)

// TestBusyReportsHolderTTL: Redis knows when a lock expires, so a busy
// result always carries the holder's remaining TTL, in (0, TTL]. The
// conformance suite skips its HolderTTL case for a driver that reports
// zero (unknown); this test keeps redisdriver from falling into that.
func TestBusyReportsHolderTTL(t *testing.T) {
	s := redistest.Shared(t)
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	ctx := testCtx(t)
	key := t.Name()
	held := req(key, "holder") // 10 s
	if res, err := d.Acquire(ctx, held); err != nil || !res.Acquired {
		t.Fatalf("Acquire = %+v, %v; want acquired", res, err)
	}
	defer d.Release(ctx, key, "holder")
	res, err := d.Acquire(ctx, req(key, "waiter"))
	if err != nil || res.Acquired {
		t.Fatalf("second Acquire = %+v, %v; want busy", res, err)
	}
	if res.HolderTTL <= 0 || res.HolderTTL > held.TTL {
		t.Errorf("busy result's HolderTTL = %v; want in (0, %v]", res.HolderTTL, held.TTL)
	}
}
