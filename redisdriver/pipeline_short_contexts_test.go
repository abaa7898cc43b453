package redisdriver_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// TestShortTryAcquireLeavesNothingHeld: goroutines share one Locker
// over a TCP proxy that delays replies 5 ms, and call TryAcquire (of a
// lock or of a semaphore's slot) on fresh keys with contexts of 1–2 ms,
// on a standalone server and on a Cluster; and of a lock with
// ReplicaAcks, which no replica acknowledges. When a TryAcquire returns an
// error, its undo has run: the key must not be held then, nor after the
// run. A key held is held by nobody until its TTL.
func TestShortTryAcquireLeavesNothingHeld(t *testing.T) {
	for _, topo := range []string{"standalone", "cluster"} {
		for _, kind := range []string{"lock", "slot", "replicated"} {
			t.Run(topo+"/"+kind, func(t *testing.T) {
				var client redis.UniversalClient
				var admin redis.UniversalClient
				switch topo {
				case "standalone":
					s := redistest.Shared(t)
					px := redistest.NewProxy(t, s.Addr())
					px.Latency(5 * time.Millisecond)
					o := s.Options()
					o.Addr = px.Addr()
					c := redis.NewClient(o)
					t.Cleanup(func() { c.Close() })
					client, admin = c, s.Client(t)
				case "cluster":
					cl := redistest.SharedCluster(t)
					proxies := map[string]*redistest.Proxy{}
					for _, n := range cl.Nodes() {
						px := redistest.NewProxy(t, n.Addr())
						px.Latency(5 * time.Millisecond)
						proxies[n.Addr()] = px
					}
					o := cl.Options()
					o.Dialer = dialVia(proxies)
					c := redis.NewClusterClient(o)
					t.Cleanup(func() { c.Close() })
					client, admin = c, cl.Client(t)
				}
				prefix := "short" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
				opts := &redisdriver.Options{Prefix: prefix}
				if kind == "replicated" {
					// No replica acknowledges: every grant is undone.
					opts.ReplicaAcks = 1
				}
				l := dlock.New(redisdriver.NewDriver(client, opts), &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}})
				t.Cleanup(func() { l.Close() })
				ctx := testCtx(t)
				try := func(ctx context.Context, key string) (*dlock.Lease, error) {
					if kind == "slot" {
						return l.TryAcquire(ctx, key, &dlock.LeaseOptions{Limit: 2})
					}
					return l.TryAcquire(ctx, key, nil)
				}

				stop := time.Now().Add(time.Second)
				var next, ended, acquired, heldAfter atomic.Int64
				var wg sync.WaitGroup
				for range 32 {
					wg.Go(func() {
						for time.Now().Before(stop) {
							key := "k" + strconv.FormatInt(next.Add(1), 10)
							cctx, cancel := context.WithTimeout(ctx, time.Millisecond+rand.N(time.Millisecond))
							lease, err := try(cctx, key)
							if cctx.Err() != nil {
								ended.Add(1)
							}
							cancel()
							if err == nil {
								acquired.Add(1)
								if rerr := lease.Release(ctx); rerr != nil {
									t.Errorf("release of a lease handed out: %v", rerr)
								}
								continue
							}
							if n := admin.Exists(ctx, prefix+"{"+key+"}").Val(); n != 0 {
								heldAfter.Add(1)
								t.Logf("%s held after TryAcquire returned %v", key, err)
							}
						}
					})
				}
				wg.Wait()
				var held int
				if topo == "cluster" {
					cc := admin.(*redis.ClusterClient)
					var mu sync.Mutex
					cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
						h := heldLockKeys(t, ctx, m, prefix)
						mu.Lock()
						held += len(h)
						mu.Unlock()
						return nil
					})
				} else {
					held = len(heldLockKeys(t, ctx, admin.(*redis.Client), prefix))
				}
				t.Logf("%d attempts, %d acquired, %d contexts ended; %d keys held right after a failed TryAcquire, %d after the run",
					next.Load(), acquired.Load(), ended.Load(), heldAfter.Load(), held)
				if ended.Load() == 0 {
					t.Fatal("no context ended during a call: the test checks nothing")
				}
				if heldAfter.Load() > 0 || held > 0 {
					t.Errorf("keys held by no lease: %d right after a failed TryAcquire, %d after the run", heldAfter.Load(), held)
				}
			})
		}
	}
}
