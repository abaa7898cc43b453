package redisdriver_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestHandoffStaleMapThenFresh: a waiter's Cluster client names a replica
// master of the key's slot (its slot map predates a failover, or its
// nodes gossip slowly) for longer than the notifier waits for a better
// map. Its subscription fails then, but that is a passing state: once the
// map is right, the waiter subscribes again and the holder's release hands
// it the key, instead of leaving it to poll at its backoff (20 s here)
// for the rest of its Acquire.
func TestHandoffStaleMapThenFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("adds a replica to a Cluster")
	}
	cl := redistest.StartCluster(t)
	admin := cl.Client(t)
	ctx := testCtx(t)
	const key = "handoff/stale-map"
	slot := keySlot(t, admin, key)
	masterAddr, _ := slotOwner(t, admin, slot)
	replica := addReplica(t, cl, masterAddr)
	fresh, err := admin.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	stale := make([]redis.ClusterSlot, len(fresh))
	for i, s := range fresh {
		stale[i] = s
		if slot >= s.Start && slot <= s.End {
			stale[i].Nodes = []redis.ClusterNode{{Addr: replica.Addr()}}
		}
	}
	var isStale atomic.Bool
	isStale.Store(true)
	o := cl.Options()
	o.ClusterSlots = func(context.Context) ([]redis.ClusterSlot, error) {
		if isStale.Load() {
			return stale, nil
		}
		return fresh, nil
	}
	wc, hc := redis.NewClusterClient(o), redis.NewClusterClient(cl.Options())
	t.Cleanup(func() { wc.Close(); hc.Close() })
	waiter, holder := mustNew(t, wc, nil), mustNew(t, hc, nil)
	t.Cleanup(func() { waiter.Close(); holder.Close() })

	lease, err := holder.TryAcquire(ctx, key, &dlock.LeaseOptions{TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	got := goAcquire(ctx, waiter, key, &dlock.LeaseOptions{TTL: 30 * time.Second, Retry: noPolling})
	time.Sleep(2500 * time.Millisecond) // the notifier gives up on the stale map
	isStale.Store(false)
	time.Sleep(2 * time.Second) // the waiter's client reloads the map, and it subscribes again
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	select {
	case a := <-got:
		if a.err != nil {
			t.Fatal(a.err)
		}
		t.Logf("handed the key %v after the release", a.at.Sub(released))
		a.lease.Release(ctx)
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter was neither handed the key nor woken 5 s after the release: its subscription failed on the stale map, and it polls at its backoff")
	}
}
