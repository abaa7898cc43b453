package redisdriver_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// failoverTo promotes replica with CLUSTER FAILOVER and returns once it
// reports itself master and old reports itself its replica.
func failoverTo(t *testing.T, replica, old *redistest.Server) {
	t.Helper()
	ctx := testCtx(t)
	rc, oc := replica.Client(t), old.Client(t)
	if err := rc.Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		t.Fatal(err)
	}
	poll(t, "the replica to take over", func() error {
		r, err := rc.Do(ctx, "ROLE").Slice()
		if err != nil {
			return err
		}
		o, err := oc.Do(ctx, "ROLE").Slice()
		if err != nil {
			return err
		}
		if r[0] != "master" || o[0] != "slave" {
			return errNotYet
		}
		return nil
	})
}

// awaitShardPropagation returns once a shard message published on master
// reaches a subscriber of ch on replica: the cluster bus carries it there.
func awaitShardPropagation(t *testing.T, master, replica *redistest.Server, ch string) {
	t.Helper()
	ctx := testCtx(t)
	ps := replica.Client(t).SSubscribe(ctx, ch)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	mc := master.Client(t)
	poll(t, "shard messages to reach the replica", func() error {
		if err := mc.SPublish(ctx, ch, "probe").Err(); err != nil {
			return err
		}
		if _, err := ps.ReceiveTimeout(ctx, 100*time.Millisecond); err != nil {
			return err
		}
		return nil
	})
}

// TestHandoffNoGrantAfterClusterFailover: after a failover, a Locker whose
// slot map predates it would place a waiter's subscription on the old
// master, now a replica, which accepts shard subscriptions of its
// master's slots. A release on the new master must never hand that waiter
// a grant that the server took back: a Turn with Granted set means that
// the key is the waiter's. And the subscription belongs on the master,
// where the release finds the waiter listening and hands it the key. (A shard message is propagated to replicas, so a grant that
// the script undid because its SPUBLISH counted nobody on the master still
// reached the waiter there, which then held a lease on a free key.)
func TestHandoffNoGrantAfterClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("a Cluster failover takes seconds")
	}
	cl := redistest.StartCluster(t)
	admin := cl.Client(t)
	ctx := testCtx(t)
	const key = "handoff/failover"
	slot := keySlot(t, admin, key)
	oldAddr, _ := slotOwner(t, admin, slot)
	replica := addReplica(t, cl, oldAddr)
	var old *redistest.Server
	for _, n := range cl.Nodes() {
		if n.Addr() == oldAddr {
			old = n
		}
	}
	// The waiter's client learns the slot map now, before the failover.
	stale := redis.NewClusterClient(cl.Options())
	if err := stale.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := stale.Get(ctx, "dlock:{"+key+"}").Err(); err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	failoverTo(t, replica, old)

	holder := newHandoffDriver(t, redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{replica.Addr()}}))
	waiter := newHandoffDriver(t, stale)
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	turns, cancel, err := waiter.SubscribeHandoff(ctx, key, "waiter")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	queue(t, ctx, waiter, key, "waiter", 1, 30*time.Second)
	awaitShardPropagation(t, replica, old, "dlock:{"+key+"}:probe")
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	turn := turnWithin(t, turns, 5*time.Second, "the waiter, after the failover")
	v, err := admin.Get(ctx, "dlock:{"+key+"}").Result()
	if turn.Granted && (err != nil || !strings.HasPrefix(v, "waiter\n")) {
		t.Fatalf("the waiter was granted %+v, but the key holds %q (%v): a grant the server took back became a lease", turn, v, err)
	}
	if !turn.Granted {
		t.Fatalf("Turn = %+v, want Granted: the waiter listened on a replica, where no release hands it the key", turn)
	}
}

// TestHandoffClusterMinimalACL: on Cluster, a user with the package doc's least
// rule and what go-redis needs to read the slot map (no ROLE) still
// subscribes its waiters, and the
// holder's release hands the key to the one waiting.
func TestHandoffClusterMinimalACL(t *testing.T) {
	cl := redistest.StartCluster(t)
	ctx := testCtx(t)
	for _, n := range cl.Nodes() {
		if err := n.Client(t).Do(ctx, append([]any{"ACL", "SETUSER", "locker"}, toAny(strings.Fields(minimalACL+" +cluster|slots +cluster|shards +cluster|nodes +readonly"))...)...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	u := "redis+cluster://locker:locker-secret-pw@" + strings.Join(cl.Addrs(), ",")
	holder, waiter := open(t, u), open(t, u)
	const key = "handoff/cluster-acl"
	lease, err := holder.TryAcquire(ctx, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := goAcquire(ctx, waiter, key, &dlock.LeaseOptions{Retry: noPolling})
	admin := cl.Client(t)
	poll(t, "the waiter's attempt to be queued for a handoff", func() error {
		vals := admin.HVals(ctx, "dlock:{"+key+"}:attempts").Val()
		if !slices.ContainsFunc(vals, func(v string) bool { return strings.Contains(v, "\n") }) {
			return errNotYet
		}
		return nil
	})
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		if a.err != nil {
			t.Fatal(a.err)
		}
		a.lease.Release(ctx)
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter was not handed the key")
	}
}
