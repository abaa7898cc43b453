package redlock_test

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/dlock-go/dlock/redlock"
)

// TestNoPhantomsShortContexts: 64 goroutines share two Lockers over three
// real nodes behind TCP proxies, each making calls whose contexts end a
// few milliseconds in, and releasing what they get: TryAcquire on fresh
// keys (1–5ms), and waiting Acquire on eight shared keys with one node's
// replies 1ms late (1–20ms). Once the Lockers are closed, no node holds
// any key: no grant that nobody received (an attempt cut short, an undo
// that overtook its acquire, a late grant on a slow node) outlives the
// run. Before, the first run left keys held for their TTL on a majority
// (87) and on a minority (779) of the nodes.
func TestNoPhantomsShortContexts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		wait    bool          // Acquire, not TryAcquire
		keys    int           // shared keys; 0: a fresh key per call
		upTo    time.Duration // contexts end after 1ms + up to this
		latency time.Duration // on node 2's replies
	}{
		{"FreshKeysTryAcquire", false, 0, 4 * time.Millisecond, 0},
		{"SharedKeysAcquire", true, 8, 19 * time.Millisecond, time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nodes := startRedis(t, 3)
			var lockers []*dlock.Locker
			for range 2 {
				clients, proxies := nodes.proxied(t)
				if tc.latency > 0 {
					proxies[2].Latency(tc.latency)
				}
				l, err := redlock.NewRedis(clients, &redlock.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}}})
				if err != nil {
					t.Fatal(err)
				}
				lockers = append(lockers, l)
			}
			const goroutines = 64
			run := 3 * time.Second
			if testing.Short() {
				run = time.Second
			}
			var granted, gaveUp atomic.Int64
			end := time.Now().Add(run)
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					l := lockers[g%2]
					for i := 0; time.Now().Before(end); i++ {
						key := fmt.Sprintf("phantom-%d-%d", g, i)
						if tc.keys > 0 {
							key = fmt.Sprintf("phantom-%d", mrand.N(tc.keys))
						}
						ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond+mrand.N(tc.upTo))
						var lease *dlock.Lease
						var err error
						if tc.wait {
							lease, err = l.Acquire(ctx, key, nil)
						} else {
							lease, err = l.TryAcquire(ctx, key, nil)
						}
						cancel()
						if err != nil {
							gaveUp.Add(1)
							continue
						}
						granted.Add(1)
						if err := lease.Release(context.Background()); err != nil {
							t.Errorf("Release: %v", err)
						}
					}
				})
			}
			wg.Wait()
			for _, l := range lockers {
				if err := l.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}
			t.Logf("%d granted, %d gave up", granted.Load(), gaveUp.Load())
			if gaveUp.Load() == 0 {
				t.Error("no attempt gave up: the contexts must end mid-call for this test to mean anything")
			}
			held := make(map[string]int) // key → nodes holding it
			for i, srv := range nodes {
				c := srv.Client(t)
				iter := c.Scan(t.Context(), 0, redisdriver.DefaultPrefix+"{phantom-*}", 1000).Iterator()
				for iter.Next(t.Context()) {
					if k := iter.Val(); strings.HasSuffix(k, "}") { // the lock, not its fence key
						held[k]++
					}
				}
				if err := iter.Err(); err != nil {
					t.Fatalf("node %d: SCAN: %v", i, err)
				}
			}
			majority, minority := 0, 0
			for _, n := range held {
				if n >= 2 {
					majority++
				} else {
					minority++
				}
			}
			if majority+minority > 0 {
				t.Errorf("after the run and Close, %d keys held on a majority of nodes and %d on a minority; want none", majority, minority)
			}
		})
	}
}
