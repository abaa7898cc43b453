package redisdriver_test

import (
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestHandoffLiveWaitersAcrossClusterFailover: two waiters of one key,
// from two drivers whose slot maps differ in age, are subscribed on the
// slot's master when a graceful failover (CLUSTER FAILOVER) makes its
// replica master; the old master, alive, becomes a replica. The waiter
// whose map predates the failover queued first. A release on the new
// master must hand the key to a waiter listening there, the first one
// queued first: a waiter left subscribed on the replica is never
// granted anything, and its queue entry is dropped by the release.
// Whatever is handed out, a grant means the key is the waiter's.
func TestHandoffLiveWaitersAcrossClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("a Cluster failover takes seconds")
	}
	cl := redistest.StartCluster(t)
	admin := cl.Client(t)
	ctx := testCtx(t)
	const key = "handoff/live-failover"
	slot := keySlot(t, admin, key)
	oldAddr, _ := slotOwner(t, admin, slot)
	replica := addReplica(t, cl, oldAddr)
	var old *redistest.Server
	for _, n := range cl.Nodes() {
		if n.Addr() == oldAddr {
			old = n
		}
	}
	early := newHandoffDriver(t, redis.NewClusterClient(cl.Options()))
	late := newHandoffDriver(t, redis.NewClusterClient(cl.Options()))
	holder := newHandoffDriver(t, redis.NewClusterClient(cl.Options()))
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	turnsE, cancelE, err := early.SubscribeHandoff(ctx, key, "early")
	if err != nil {
		t.Fatal(err)
	}
	defer cancelE()
	queue(t, ctx, early, key, "early", 1, 30*time.Second)
	failoverTo(t, replica, old)
	turnsL, cancelL, err := late.SubscribeHandoff(ctx, key, "late")
	if err != nil {
		t.Fatal(err)
	}
	defer cancelL()
	queue(t, ctx, late, key, "late", 1, 30*time.Second)
	// The early waiter's subscription follows the slot to the new
	// master (the old one dropped it as a replica): wait for it there.
	rc := replica.Client(t)
	earlyCh := waiterChannel(key, "early")
	for {
		n, err := rc.Do(ctx, "PUBSUB", "SHARDNUMSUB", earlyCh).Slice()
		if err != nil {
			t.Fatal(err)
		}
		if len(n) == 2 && n[1] == int64(1) {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the early waiter never subscribed on the new master")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	// Plain wake-ups (a subscription live again after it moved) may come
	// first; the first grant is what counts.
	var got driver.Turn
	who := ""
	deadline := time.After(5 * time.Second)
	for !got.Granted {
		select {
		case got = <-turnsE:
			who = "early"
		case got = <-turnsL:
			who = "late"
		case <-deadline:
			t.Fatalf("no waiter was granted the key within 5 s of the release (last Turn: %s %+v)", who, got)
		}
	}
	v, _ := admin.Get(ctx, "dlock:{"+key+"}").Result()
	if got.Granted && !strings.HasPrefix(v, who+"\n") {
		t.Fatalf("%s was granted %+v, but the key holds %q", who, got, v)
	}
	if who != "early" {
		t.Errorf("first Turn: %s %+v (key %q); want the early waiter, queued first, granted", who, got, v)
	}
}
