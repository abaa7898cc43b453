package redisdriver_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestHandoffShortContextsShareLockers: many goroutines share two
// Lockers (one through a TCP proxy with latency) and wait for one key with
// contexts that end 1–20 ms into Acquire, while a client on PSUBSCRIBE *
// listens to everything. Never two valid leases at once; and once every
// call returned and every lease was released, nobody holds the key.
func TestHandoffShortContextsShareLockers(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	ctx := testCtx(t)
	monitor := admin.PSubscribe(ctx, "*")
	defer monitor.Close()
	if _, err := monitor.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	px := redistest.NewProxy(t, s.Addr())
	px.Latency(time.Millisecond)
	o := s.Options()
	o.Addr = px.Addr()
	lockers := []*dlock.Locker{newLocker(t, s.Options(), nil), newLocker(t, o, nil)}
	key := uniqueKey("handoff/stress/")
	opts := &dlock.LeaseOptions{TTL: 5 * time.Second, Retry: noPolling}
	var holders, leases, gaveUp atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(4 * time.Second)
	for i := range 16 {
		l := lockers[i%2]
		wg.Go(func() {
			for time.Now().Before(stop) {
				cctx, cancel := context.WithTimeout(ctx, time.Duration(1+rand.IntN(20))*time.Millisecond)
				lease, err := l.Acquire(cctx, key, opts)
				cancel()
				if err != nil {
					gaveUp.Add(1)
					continue
				}
				if n := holders.Add(1); n > 1 {
					t.Errorf("%d valid leases at once", n)
				}
				leases.Add(1)
				time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
				holders.Add(-1)
				if err := lease.Release(ctx); err != nil {
					t.Errorf("release: %v", err)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d leases, %d calls gave up", leases.Load(), gaveUp.Load())
	if leases.Load() == 0 {
		t.Fatal("no lease was ever granted")
	}
	if v, err := admin.Get(ctx, "dlock:{"+key+"}").Result(); err != redis.Nil {
		t.Errorf("every call returned and every lease was released, yet the key holds %q (%v)", v, err)
	}
}
