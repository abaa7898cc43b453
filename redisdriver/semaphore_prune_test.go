package redisdriver_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// TestSemaphorePruneBounded: an acquire on a semaphore with thousands of
// expired holders (a large limit whose holders died together) and a live
// one does a bounded amount of work: one acquire dropped them all, one
// HDEL each, and blocked the server for 83ms at MaxLimit (its slow log,
// on the 2-core test machine; 1.3s with every command logged). The
// expired holders count for nothing meanwhile.
func TestSemaphorePruneBounded(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	admin := s.Client(t)
	d := semDriver(t, s)
	ctx := testCtx(t)
	key := uniqueKey("sem/prune/")
	lk := redisdriver.DefaultPrefix + "{" + key + "}"
	const limit = 3
	if res, err := d.AcquireSlot(ctx, req(key, "live"), limit); err != nil || !res.Acquired {
		t.Fatalf("AcquireSlot = %+v, %v", res, err)
	}
	// Holders that expired a second ago, written as the scripts do.
	past := float64(time.Now().Add(-time.Second).UnixMicro())
	for from := 0; from < driver.MaxLimit; from += 4096 {
		pipe := admin.Pipeline()
		for i := from; i < from+4096; i++ {
			tok := fmt.Sprint("dead", i)
			pipe.ZAdd(ctx, lk, redis.Z{Score: past, Member: tok})
			pipe.HSet(ctx, lk+":slots", tok, "1\n1 0\ndead")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	admin.ConfigSet(ctx, "slowlog-log-slower-than", "1000")
	admin.SlowLogReset(ctx)
	if res, err := d.AcquireSlot(ctx, req(key, "new"), limit); err != nil || !res.Acquired {
		t.Fatalf("AcquireSlot beside %d expired holders = %+v, %v; want a slot", driver.MaxLimit, res, err)
	}
	for _, e := range admin.SlowLogGet(ctx, 10).Val() {
		if len(e.Args) > 0 && (e.Args[0] == "evalsha" || e.Args[0] == "eval") && e.Duration > 20*time.Millisecond {
			t.Errorf("the acquire script ran %v beside %d expired holders; want a bounded amount of work", e.Duration, driver.MaxLimit)
		}
	}
	if res, err := d.AcquireSlot(ctx, req(key, "third"), limit); err != nil || !res.Acquired {
		t.Fatalf("third AcquireSlot = %+v, %v; want a slot (expired holders count for nothing)", res, err)
	}
	if res, err := d.AcquireSlot(ctx, req(key, "fourth"), limit); err != nil || res.Acquired || res.HolderTTL <= 0 {
		t.Errorf("fourth AcquireSlot = %+v, %v; want refused with a positive HolderTTL", res, err)
	}
	hs, got, err := d.InspectSlots(ctx, key)
	if err != nil || len(hs) != 3 || got != limit {
		t.Errorf("InspectSlots = %d holders, limit %d, %v; want 3, %d", len(hs), got, err, limit)
	}
}
