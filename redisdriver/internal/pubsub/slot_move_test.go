package pubsub_test

import (
	"testing"

	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver/internal/pubsub"
	"github.com/redis/go-redis/v9"
)

// TestSlotMoveFollowsChannel: on Cluster, a channel's shard subscription
// is on its slot's master; when the slot moves to another master, the old
// one drops the subscription, and the Mux subscribes it again on the new
// owner, wakes its members, and messages published there reach it.
func TestSlotMoveFollowsChannel(t *testing.T) {
	cl := redistest.StartCluster(t)
	client := redis.NewClusterClient(cl.Options())
	defer client.Close()
	rec := newRecorder()
	mux := pubsub.New(client, rec)
	defer mux.Close()
	ctx := testCtx(t)
	const ch = "pubsub/{move}"
	m := newMember()
	join(t, mux, m, ch)

	admin := cl.Client(t)
	slot := int(admin.ClusterKeySlot(ctx, ch).Val())
	from, to := moveSlot(t, cl, slot)
	t.Logf("slot %d moved from %s to %s", slot, from, to)
	await(t, m.woken, "wake-up once the channel is live on the slot's new owner")

	owner := nodeClient(t, cl, to)
	if n := owner.PubSubShardNumSub(ctx, ch).Val()[ch]; n != 1 {
		t.Fatalf("the new owner %s counts %d shard subscribers of %q, want 1", to, n, ch)
	}
	if err := owner.SPublish(ctx, ch, "moved").Err(); err != nil {
		t.Fatal(err)
	}
	if msg := await(t, rec.messages, "message on the new owner"); msg != (message{ch, "moved", true}) {
		t.Fatalf("Hooks.Message got %+v", msg)
	}
}

// nodeClient returns a client of the Cluster node at addr.
func nodeClient(t *testing.T, cl *redistest.Cluster, addr string) *redis.Client {
	t.Helper()
	for _, n := range cl.Nodes() {
		if n.Addr() == addr {
			return n.Client(t)
		}
	}
	t.Fatalf("no node at %s", addr)
	return nil
}

// moveSlot migrates the (empty) slot to another master with CLUSTER
// SETSLOT … IMPORTING / MIGRATING / NODE, as redis-cli --cluster reshard
// does, and returns the old and new owners' addresses.
func moveSlot(t *testing.T, cl *redistest.Cluster, slot int) (from, to string) {
	t.Helper()
	ctx := testCtx(t)
	ids := map[string]string{} // node ID by address
	for _, n := range cl.Nodes() {
		id, err := n.Client(t).Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			t.Fatal(err)
		}
		ids[n.Addr()] = id
	}
	slots, err := cl.Client(t).ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if s.Start <= slot && slot <= s.End {
			from = s.Nodes[0].Addr
		}
	}
	for addr := range ids {
		if addr != from {
			to = addr
			break
		}
	}
	steps := [][]any{
		{to, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[from]},
		{from, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to]},
		{to, "CLUSTER", "SETSLOT", slot, "NODE", ids[to]},
		{from, "CLUSTER", "SETSLOT", slot, "NODE", ids[to]},
	}
	for addr := range ids {
		if addr != from && addr != to {
			steps = append(steps, []any{addr, "CLUSTER", "SETSLOT", slot, "NODE", ids[to]})
		}
	}
	for _, s := range steps {
		if err := nodeClient(t, cl, s[0].(string)).Do(ctx, s[1:]...).Err(); err != nil {
			t.Fatalf("%v on %s: %v", s[1:], s[0], err)
		}
	}
	return from, to
}
