package redisdriver_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// TestCancelledTryAcquireLeavesNoKeyHeld: many goroutines share one
// Locker and call TryAcquire on fresh keys with contexts that end 1–5 ms
// into the call, so that many contexts end while the acquire is queued,
// batched, written or answered. The root undoes every attempt whose
// outcome is unknown; that undo must act after the acquire it undoes, on
// whichever lane or batch each goes out. After the run, with every lease
// handed out released, no lock key may be left held: a key left held is
// held by nobody for its whole TTL.
func TestCancelledTryAcquireLeavesNoKeyHeld(t *testing.T) {
	for _, mode := range []struct {
		name  string
		lanes int // 0: the driver's own; 1<<30: every call direct
	}{{"batched", 0}, {"direct", 1 << 30}} {
		t.Run(mode.name, func(t *testing.T) {
			s := redistest.Shared(t)
			c := s.Client(t)
			prefix := "abandon" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
			d := redisdriver.NewDriver(c, &redisdriver.Options{Prefix: prefix})
			if mode.lanes > 0 {
				redisdriver.SetLanesForTest(d, mode.lanes, false)
			}
			l := dlock.New(d, &dlock.Options{TTL: time.Minute})
			t.Cleanup(func() { l.Close() })
			ctx := testCtx(t)

			const goroutines = 64
			stop := time.Now().Add(3 * time.Second)
			var next, ended, acquired atomic.Int64
			var wg sync.WaitGroup
			for range goroutines {
				wg.Go(func() {
					for time.Now().Before(stop) {
						key := "k" + strconv.FormatInt(next.Add(1), 10)
						cctx, cancel := context.WithTimeout(ctx, time.Millisecond+rand.N(4*time.Millisecond))
						lease, err := l.TryAcquire(cctx, key, nil)
						if cctx.Err() != nil {
							ended.Add(1)
						}
						cancel()
						if err == nil {
							acquired.Add(1)
							if rerr := lease.Release(ctx); rerr != nil {
								t.Errorf("release of a lease handed out: %v", rerr)
							}
						}
					}
				})
			}
			wg.Wait()

			held := heldLockKeys(t, ctx, c, prefix)
			t.Logf("%d attempts, %d acquired, %d contexts ended; %d lock keys left held", next.Load(), acquired.Load(), ended.Load(), len(held))
			if ended.Load() == 0 {
				t.Fatal("no context ended during a call: the test checks nothing")
			}
			if len(held) > 0 {
				t.Errorf("%d lock keys left held by no lease after every lease was released (e.g. %v)", len(held), held[:min(len(held), 5)])
			}
		})
	}
}

// heldLockKeys returns the lock keys under prefix that exist: PREFIX{KEY}
// alone, not the fence, queue and other keys beside it.
func heldLockKeys(t *testing.T, ctx context.Context, c *redis.Client, prefix string) []string {
	t.Helper()
	var held []string
	it := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for it.Next(ctx) {
		if k := it.Val(); strings.HasSuffix(k, "}") {
			held = append(held, k)
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return held
}
