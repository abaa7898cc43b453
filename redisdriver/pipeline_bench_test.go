package redisdriver_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// tripCounter is a go-redis hook that counts round trips: a lone command
// or a pipeline is one.
type tripCounter struct{ n atomic.Int64 }

func (h *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// BenchmarkPipelinePairs is acquire+release pairs of g goroutines, each
// on its own key, on one driver: with the batcher as built ("batched"),
// as first built (two lanes, senders not yielding: "two-lanes") and off
// ("direct", every command sent by its caller), for an A/B in one
// process. It reports pairs/s and round trips per pair.
func BenchmarkPipelinePairs(b *testing.B) {
	modes := []struct {
		name  string
		lanes int
		eager bool
	}{
		{"batched", redisdriver.MaxInFlightForTest, false},
		{"two-lanes", 2, true},
		{"direct", redisdriver.AllDirectForTest, true},
	}
	for _, g := range []int{1, 8, 32, 128} {
		for _, m := range modes {
			b.Run(fmt.Sprintf("g=%d/%s", g, m.name), func(b *testing.B) {
				c := redistest.Shared(b).Client(b)
				trips := &tripCounter{}
				c.AddHook(trips)
				d := redisdriver.NewDriver(c, nil)
				defer d.Close()
				redisdriver.SetLanesForTest(d, m.lanes, m.eager)
				ctx := context.Background()
				base := "bench/" + rand.Text()
				// Warm up: scripts loaded, connections dialled.
				pairs(b, ctx, d, base, g, int64(4*g))
				b.ResetTimer()
				t0, start := trips.n.Load(), time.Now()
				pairs(b, ctx, d, base, g, int64(b.N))
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pairs/s")
				b.ReportMetric(float64(trips.n.Load()-t0)/float64(b.N), "trips/pair")
			})
		}
	}
}

// pairs runs n acquire+release pairs on g goroutines, each on its own key.
func pairs(b testing.TB, ctx context.Context, d driver.Locker, base string, g int, n int64) {
	var left atomic.Int64
	left.Store(n)
	var wg sync.WaitGroup
	for i := range g {
		wg.Go(func() {
			r := driver.Request{Key: fmt.Sprintf("%s/%d", base, i), Token: rand.Text(), TTL: 10 * time.Second, Owner: "bench"}
			for left.Add(-1) >= 0 {
				res, err := d.Acquire(ctx, r)
				if err != nil || !res.Acquired {
					b.Error(err, res)
					return
				}
				if err := d.Release(ctx, r.Key, r.Token); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkLonePairDeadline is acquire+release pairs of one goroutine, on
// a context without deadline, with one near enough that an acquire goes
// out from a goroutine of the batcher (see autopipe.Pipeline.Awaited), and with
// one beyond the client's timeouts: the cost of that goroutine.
func BenchmarkLonePairDeadline(b *testing.B) {
	for _, deadline := range []time.Duration{0, time.Second, time.Minute} {
		b.Run("deadline="+deadline.String(), func(b *testing.B) {
			c := redistest.Shared(b).Client(b)
			d := redisdriver.NewDriver(c, nil)
			defer d.Close()
			r := driver.Request{Key: "bench/lone/" + rand.Text(), Token: rand.Text(), TTL: 10 * time.Second, Owner: "bench"}
			for b.Loop() {
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if deadline > 0 {
					ctx, cancel = context.WithTimeout(ctx, deadline)
				}
				if _, err := d.Acquire(ctx, r); err != nil {
					b.Fatal(err)
				}
				if err := d.Release(ctx, r.Key, r.Token); err != nil {
					b.Fatal(err)
				}
				cancel()
			}
		})
	}
}
