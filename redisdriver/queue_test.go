package redisdriver_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
)

// TestQueueBounded: waiters that give up (an Acquire whose context ended,
// an election candidate with a timeout) leave their tag in the key's queue.
// Entries carry their waiter's deadline and are pruned by it, a few per
// attempt, so abandoned waits do not grow the queue without bound while
// live waiters keep it alive; and a release tries a bounded number of
// queued waiters, not every dead entry in one script.
func TestQueueBounded(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	ctx := testCtx(t)
	key := uniqueKey("queue/")
	qk := "dlock:{" + key + "}:queue"
	if _, err := d.Acquire(ctx, req(key, "holder")); err != nil {
		t.Fatal(err)
	}
	abandon := func(round, n int) {
		t.Helper()
		for i := range n {
			r := req(key, "w"+strconv.Itoa(round)+"-"+strconv.Itoa(i))
			// It would try again within 1ms: it never does.
			if res, err := acquireQueued(ctx, t, d, r, driver.Queued{Wait: time.Millisecond}); err != nil || res.Acquired {
				t.Fatalf("waiter's Acquire = %+v, %v; want busy", res, err)
			}
		}
	}
	const n = 100
	abandon(0, n)
	if c := admin.ZCard(ctx, qk).Val(); c != n {
		t.Fatalf("queue has %d entries after %d busy attempts, want %d", c, n, n)
	}
	// Past every deadline of the first round (Wait*2 + 1s) those waiters
	// are gone, while a live waiter, attempting every 200ms, keeps the
	// queue alive, and new waiters keep coming.
	live, liveWait := req(key, "live"), 200*time.Millisecond
	for range 8 {
		if res, err := acquireQueued(ctx, t, d, live, driver.Queued{Wait: liveWait}); err != nil || res.Acquired {
			t.Fatalf("live waiter's Acquire = %+v, %v; want busy", res, err)
		}
		time.Sleep(liveWait)
	}
	abandon(1, n)
	if c := admin.ZCard(ctx, qk).Val(); c > n+n/10 {
		t.Errorf("queue has %d entries after %d waits of which %d long abandoned: dead entries are not pruned", c, 2*n, n)
	}
	before := admin.ZCard(ctx, qk).Val()
	if err := d.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	if popped := before - admin.ZCard(ctx, qk).Val(); popped > 8 {
		t.Errorf("a release popped %d queued waiters that do not listen in one script; want at most a few", popped)
	}
}
