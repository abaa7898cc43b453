package redisdriver_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// TestHoldersNeverOverlapRedis: workers with their own Lockers, each
// behind its own proxy to one real redis-server, contend for one key with
// a short TTL while their networks are partitioned and slowed at random
// (the faults). Whenever a lease is granted, every other lease still held
// must already report its loss: a lease that reports itself valid after
// another holder was granted breaks mutual exclusion as holders see it.
func TestHoldersNeverOverlapRedis(t *testing.T) {
	srv := redistest.Start(t)
	const workers = 4
	var (
		mu     sync.Mutex
		active = map[*dlock.Lease]int{}
		grants int
	)
	var wg sync.WaitGroup
	proxies := make([]*redistest.Proxy, workers)
	lockers := make([]*dlock.Locker, workers)
	// Proxies and Lockers first: the first proxy may have to build the
	// toxiproxy server (seconds on a cold cache), which must not eat the
	// run's time.
	for i := range workers {
		px := redistest.NewProxy(t, srv.Addr())
		proxies[i] = px
		opts := srv.Options()
		opts.Addr = px.Addr()
		opts.ReadTimeout, opts.WriteTimeout, opts.DialTimeout = 150*time.Millisecond, 150*time.Millisecond, 150*time.Millisecond
		client := redis.NewClient(opts)
		t.Cleanup(func() { client.Close() })
		l, err := redisdriver.New(client, &redisdriver.Options{Lock: &dlock.Options{ReleaseTimeout: 300 * time.Millisecond, LeaseOptions: dlock.LeaseOptions{TTL: 300 * time.Millisecond}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		lockers[i] = l
	}
	ctx, stop := context.WithTimeout(t.Context(), 4*time.Second)
	defer stop()
	for i, l := range lockers {
		wg.Go(func() {
			for ctx.Err() == nil {
				actx, cancel := context.WithTimeout(ctx, time.Duration(rand.N(300)+1)*time.Millisecond)
				lease, err := l.Acquire(actx, "k", nil)
				cancel()
				if err != nil {
					continue
				}
				mu.Lock()
				grants++
				for other, w := range active {
					if err := other.Err(); err == nil {
						t.Errorf("two holders: worker %d granted fence %d while worker %d's lease (fence %d) reports itself valid for %v more",
							i, lease.Fence(), w, other.Fence(), time.Until(other.ValidUntil()))
					}
				}
				active[lease] = i
				mu.Unlock()
				hold := time.NewTimer(time.Duration(rand.N(400)) * time.Millisecond)
				select {
				case <-hold.C:
				case <-lease.Context().Done():
				case <-ctx.Done():
				}
				hold.Stop()
				mu.Lock()
				delete(active, lease)
				mu.Unlock()
				rctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				lease.Release(rctx)
				cancel()
			}
		})
	}
	wg.Go(func() { // the faults
		for ctx.Err() == nil {
			px := proxies[rand.N(workers)]
			if rand.N(2) == 0 {
				px.Partition()
			} else {
				px.Latency(time.Duration(rand.N(200)) * time.Millisecond)
			}
			t := time.NewTimer(time.Duration(rand.N(500)) * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
			px.Heal()
		}
	})
	wg.Wait()
	t.Logf("%d grants", grants)
	if grants < 5 {
		t.Errorf("only %d grants in 4s; the test exercised little", grants)
	}
}
