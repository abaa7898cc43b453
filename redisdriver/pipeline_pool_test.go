package redisdriver_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestPipelineSmallPool: on a client whose pool has fewer connections
// than the batcher's lanes, with the driver's pub/sub connection beside
// them, callers that wait for one key are still woken by its releases
// (their retry alone would take longer than the test allows) and calls
// on other keys go on: the lanes waiting on the pool neither deadlock
// nor starve the release a waiter needs.
func TestPipelineSmallPool(t *testing.T) {
	for _, size := range []int{1, 2} {
		t.Run(fmt.Sprintf("PoolSize=%d", size), func(t *testing.T) {
			o := redistest.Shared(t).Options()
			o.PoolSize = size
			o.PoolTimeout = 20 * time.Second
			c := redis.NewClient(o)
			t.Cleanup(func() { c.Close() })
			l := mustNew(t, c, nil)
			t.Cleanup(func() { l.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			base := uniqueKey("pipe/pool/")
			opts := &dlock.LeaseOptions{TTL: 10 * time.Second, Retry: dlock.ExponentialBackoff(time.Minute, time.Minute)}
			var inside atomic.Int32
			var wg sync.WaitGroup
			for g := range 12 {
				wg.Go(func() {
					key := base + "/shared"
					if g%3 == 0 {
						key = fmt.Sprintf("%s/own/%d", base, g)
					}
					for range 10 {
						err := l.Do(ctx, key, opts, func(context.Context, *dlock.Lease) error {
							if key == base+"/shared" && inside.Add(1) != 1 {
								t.Errorf("two holders of %s at once", key)
							}
							defer func() {
								if key == base+"/shared" {
									inside.Add(-1)
								}
							}()
							return nil
						})
						if err != nil {
							t.Errorf("Do %s with a pool of %d: %v", key, size, err)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}
