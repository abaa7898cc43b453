package redisdriver_test

import (
	"net"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
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
