package redisdriver_test

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// TestReleaseDuringMigrationWakesWaiters: the key's slot is being
// migrated (its keys already MIGRATEd to the importing node, the slot
// still the source's) when the holder releases: the source answers ASK,
// and the release runs on the target, where no waiter listens, as the
// waiters listen on the slot's owner. The release must still wake them
// (here a queued handoff waiter), not leave them asleep until the
// migration ends and the slot map catches up.
func TestReleaseDuringMigrationWakesWaiters(t *testing.T) {
	cl := redistest.StartCluster(t)
	admin := cl.Client(t)
	holder := newHandoffDriver(t, redis.NewClusterClient(cl.Options()))
	waiter := newHandoffDriver(t, redis.NewClusterClient(cl.Options()))
	ctx := testCtx(t)
	key := uniqueKey("handoff/ask/")
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: time.Minute}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	turns, cancel, err := waiter.SubscribeHandoff(ctx, key, "w")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	queue(t, ctx, waiter, key, "w", 1, time.Minute)

	slot := keySlot(t, admin, key)
	from, fromID := slotOwner(t, admin, slot)
	nodes := map[string]*redis.Client{}
	var to, toID string
	for _, n := range cl.Nodes() {
		c := n.Client(t)
		nodes[n.Addr()] = c
		if id := c.Do(ctx, "CLUSTER", "MYID").Val().(string); n.Addr() != from && to == "" {
			to, toID = n.Addr(), id
		}
	}
	host, port, _ := net.SplitHostPort(to)
	keys := []any{"dlock:{" + key + "}", "dlock:{" + key + "}:fence", "dlock:{" + key + "}:queue", "dlock:{" + key + "}:attempts"}
	for _, s := range []struct {
		node string
		args []any
	}{
		{to, []any{"CLUSTER", "SETSLOT", slot, "IMPORTING", fromID}},
		{from, []any{"CLUSTER", "SETSLOT", slot, "MIGRATING", toID}},
		{from, append([]any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}, keys...)},
	} {
		if err := nodes[s.node].Do(ctx, s.args...).Err(); err != nil {
			t.Fatalf("%v on %s: %v", s.args, s.node, err)
		}
	}
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	turnWithin(t, turns, 2*time.Second, "the waiter on the migrating slot's owner")
}

// TestHandoffSlotMigration: the key's slot migrates to another master
// (MIGRATE of its lock, fence key, queue and queued attempts, then
// SETSLOT … NODE) while a waiter is queued for a handoff. The waiter's
// channels follow the slot, and the holder's release, on the new owner,
// hands it the key (or wakes it) promptly, with a fence above the
// holder's.
func TestHandoffSlotMigration(t *testing.T) {
	cl := redistest.StartCluster(t)
	admin := cl.Client(t)
	holder := newHandoffDriver(t, redis.NewClusterClient(cl.Options()))
	wc := redis.NewClusterClient(cl.Options())
	t.Cleanup(func() { wc.Close() })
	waiter := mustNew(t, wc, &redisdriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute, Retry: noPolling}}})
	t.Cleanup(func() { waiter.Close() })
	ctx := testCtx(t)
	key := uniqueKey("handoff/migrate/")
	res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: time.Minute})
	if err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	got := goAcquire(ctx, waiter, key, nil)
	poll(t, "the waiter's attempt to be queued", func() error {
		vals := admin.HVals(ctx, "dlock:{"+key+"}:attempts").Val()
		if !slices.ContainsFunc(vals, func(v string) bool { return strings.Contains(v, "\n") }) {
			return errNotYet // no attempt to grant yet (a plain entry is only a deadline)
		}
		return nil
	})

	slot := keySlot(t, admin, key)
	from, fromID := slotOwner(t, admin, slot)
	nodes := map[string]*redis.Client{}
	var to, toID string
	for _, n := range cl.Nodes() {
		c := n.Client(t)
		nodes[n.Addr()] = c
		if id := c.Do(ctx, "CLUSTER", "MYID").Val().(string); n.Addr() != from && to == "" {
			to, toID = n.Addr(), id
		}
	}
	host, port, _ := net.SplitHostPort(to)
	keys := []any{"dlock:{" + key + "}", "dlock:{" + key + "}:fence", "dlock:{" + key + "}:queue", "dlock:{" + key + "}:attempts"}
	steps := []struct {
		node string
		args []any
	}{
		{to, []any{"CLUSTER", "SETSLOT", slot, "IMPORTING", fromID}},
		{from, []any{"CLUSTER", "SETSLOT", slot, "MIGRATING", toID}},
		{from, append([]any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}, keys...)},
		{to, []any{"CLUSTER", "SETSLOT", slot, "NODE", toID}},
		{from, []any{"CLUSTER", "SETSLOT", slot, "NODE", toID}},
	}
	for addr := range nodes {
		if addr != from && addr != to {
			steps = append(steps, struct {
				node string
				args []any
			}{addr, []any{"CLUSTER", "SETSLOT", slot, "NODE", toID}})
		}
	}
	for _, s := range steps {
		if err := nodes[s.node].Do(ctx, s.args...).Err(); err != nil {
			t.Fatalf("%v on %s: %v", s.args, s.node, err)
		}
	}
	if n := nodes[to].Exists(ctx, keys[0].(string), keys[2].(string), keys[3].(string)).Val(); n != 3 {
		t.Fatalf("%d of the lock, queue and attempts on the new owner, want 3", n)
	}
	ch := "dlock:{" + key + "}:released"
	poll(t, "the waiter to subscribe on the new owner", func() error {
		m, err := nodes[to].Do(ctx, "PUBSUB", "SHARDNUMSUB", ch).Slice()
		if err == nil && (len(m) != 2 || m[1] != int64(1)) {
			err = errNotYet
		}
		return err
	})
	released := time.Now()
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.err != nil {
		t.Fatalf("waiter: %v", a.err)
	}
	defer a.lease.Release(ctx)
	if d := a.at.Sub(released); d > 5*time.Second {
		t.Errorf("the waiter got the key %v after the release, on the slot's new owner", d)
	}
	if a.lease.Fence() <= res.Fence {
		t.Errorf("fence %d not above the holder's %d", a.lease.Fence(), res.Fence)
	}
	t.Logf("granted %v after the release", a.at.Sub(released))
}
