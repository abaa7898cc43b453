package redisdriver_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// wakeBound is how long a waiter may take to be woken after a topology
// change or a release: generous, for a loaded machine.
const wakeBound = 15 * time.Second

// waiter is one subscription of a test.
type waiter struct {
	ch     <-chan struct{}
	cancel func()
}

// subscribeN subscribes n waiters of key through d, each within wakeBound.
func subscribeN(t *testing.T, d driver.Locker, key string, n int) []waiter {
	t.Helper()
	ws := make([]waiter, n)
	for i := range ws {
		ctx, cancel := context.WithTimeout(context.Background(), wakeBound)
		ch, unsub, err := d.(driver.Notifier).Subscribe(ctx, key)
		cancel()
		if err != nil {
			t.Fatalf("Subscribe %q (waiter %d): %v", key, i, err)
		}
		ws[i] = waiter{ch, unsub}
		t.Cleanup(unsub)
	}
	return ws
}

// drain empties the waiters' channels of wake-ups already delivered.
func drain(ws []waiter) {
	for _, w := range ws {
		select {
		case <-w.ch:
		default:
		}
	}
}

// awaitWoken fails t unless every waiter is woken within wakeBound.
func awaitWoken(t *testing.T, ws []waiter, why string) {
	t.Helper()
	awaitWokenWithin(t, ws, wakeBound, why)
}

// awaitWokenWithin fails t unless every waiter is woken within bound.
func awaitWokenWithin(t *testing.T, ws []waiter, bound time.Duration, why string) {
	t.Helper()
	deadline := time.After(bound)
	for i, w := range ws {
		select {
		case <-w.ch:
		case <-deadline:
			t.Fatalf("waiter %d of %d not woken within %v %s", i, len(ws), bound, why)
		}
	}
}

// releaseOnce takes and releases key through d, which wakes its waiters.
func releaseOnce(t *testing.T, d driver.Locker, key string) {
	t.Helper()
	ctx := testCtx(t)
	if _, err := d.Acquire(ctx, req(key, "releaser")); err != nil {
		t.Fatal(err)
	}
	if err := d.Release(ctx, key, "releaser"); err != nil {
		t.Fatal(err)
	}
}

// slotOwner returns the address and node ID of the master serving slot.
func slotOwner(t *testing.T, c *redis.ClusterClient, slot int) (addr, id string) {
	t.Helper()
	slots, err := c.ClusterSlots(testCtx(t)).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if s.Start <= slot && slot <= s.End {
			return s.Nodes[0].Addr, s.Nodes[0].ID
		}
	}
	t.Fatalf("slot %d has no owner", slot)
	return "", ""
}

// moveSlot migrates the (empty) slot to another master with CLUSTER
// SETSLOT … IMPORTING / MIGRATING / NODE, as redis-cli --cluster reshard
// does, and returns the new owner's address.
func moveSlot(t *testing.T, cl *redistest.Cluster, slot int) string {
	t.Helper()
	ctx := testCtx(t)
	nodes := map[string]*redis.Client{} // by address
	ids := map[string]string{}
	for _, n := range cl.Nodes() {
		c := n.Client(t)
		nodes[n.Addr()] = c
		id, err := c.Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			t.Fatal(err)
		}
		ids[n.Addr()] = id
	}
	admin := cl.Client(t)
	from, _ := slotOwner(t, admin, slot)
	var to string
	for addr := range nodes {
		if addr != from {
			to = addr
			break
		}
	}
	steps := []struct {
		node string
		args []any
	}{
		{to, []any{"CLUSTER", "SETSLOT", slot, "IMPORTING", ids[from]}},
		{from, []any{"CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to]}},
		{to, []any{"CLUSTER", "SETSLOT", slot, "NODE", ids[to]}},
		{from, []any{"CLUSTER", "SETSLOT", slot, "NODE", ids[to]}},
	}
	for addr := range nodes {
		if addr != from && addr != to {
			steps = append(steps, struct {
				node string
				args []any
			}{addr, []any{"CLUSTER", "SETSLOT", slot, "NODE", ids[to]}})
		}
	}
	for _, s := range steps {
		if err := nodes[s.node].Do(ctx, s.args...).Err(); err != nil {
			t.Fatalf("%v on %s: %v", s.args, s.node, err)
		}
	}
	return to
}

func keySlot(t *testing.T, c *redis.ClusterClient, key string) int {
	t.Helper()
	slot, err := c.ClusterKeySlot(testCtx(t), "dlock:{"+key+"}").Result()
	if err != nil {
		t.Fatal(err)
	}
	return int(slot)
}

// pubsubConns counts the clients in pub/sub mode on each server.
func pubsubConns(t *testing.T, servers []*redistest.Server) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, s := range servers {
		c := redis.NewClient(s.Options())
		list, err := c.ClientList(testCtx(t)).Result()
		c.Close()
		if err != nil {
			continue // a killed server has no clients
		}
		for _, line := range strings.Split(list, "\n") {
			if strings.Contains(line, " sub=") && !strings.Contains(line, " sub=0 psub=0 ssub=0 ") {
				counts[s.Addr()]++
			}
		}
	}
	return counts
}

// awaitNoPubsub fails t unless the servers' pub/sub clients are gone
// within wakeBound (a server notices a closed connection a moment later).
func awaitNoPubsub(t *testing.T, servers []*redistest.Server) {
	t.Helper()
	deadline := time.Now().Add(wakeBound)
	for {
		counts := pubsubConns(t, servers)
		if len(counts) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pub/sub connections left after Close: %v", counts)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTopologySlotMoveWithWaiters: a slot moves to another master (CLUSTER
// SETSLOT … NODE) while waiters of a key in it are subscribed. The old
// owner drops their sharded subscriptions (sunsubscribe): they are
// subscribed again on the new owner and woken once, and the next release
// there wakes them all. A driver whose slot map is stale gets MOVED for a
// new subscription there: it follows it, and Subscribe neither hangs nor
// returns before the subscription is live.
func TestTopologySlotMoveWithWaiters(t *testing.T) {
	verifyNoLeaks(t)
	cl := redistest.StartCluster(t)
	const key = "move/k"
	client := redis.NewClusterClient(cl.Options())
	d := redisdriver.NewDriver(client, nil)
	stale := redis.NewClusterClient(cl.Options())
	ds := redisdriver.NewDriver(stale, nil)
	ws := subscribeN(t, d, key, 3)
	// ds learns the slot map before the move.
	releaseOnce(t, ds, "move/other")

	admin := cl.Client(t)
	slot := keySlot(t, admin, key)
	from, _ := slotOwner(t, admin, slot)
	to := moveSlot(t, cl, slot)
	t.Logf("slot %d moved from %s to %s", slot, from, to)
	awaitWoken(t, ws, "after their slot moved")

	// A new waiter through the stale map: MOVED, followed.
	start := time.Now()
	late := subscribeN(t, ds, key, 1)
	t.Logf("subscribe with a stale slot map took %v", time.Since(start))

	// The next release on the new owner reaches every waiter: the
	// subscriptions followed the slot.
	fresh := redisdriver.NewDriver(cl.Client(t), nil)
	defer fresh.Close()
	drain(ws)
	releaseOnce(t, fresh, key)
	awaitWoken(t, ws, "by a release on the slot's new owner")
	awaitWoken(t, late, "(subscribed through a stale slot map) by a release on the new owner")
	if n := pubsubConns(t, cl.Nodes())[from]; n != 0 {
		t.Errorf("%d pub/sub connections left on the old owner %s, want 0", n, from)
	}

	for _, w := range append(ws, late...) {
		w.cancel()
	}
	d.Close()
	ds.Close()
	client.Close()
	stale.Close()
	awaitNoPubsub(t, cl.Nodes())
}

// noChannelUser is an ACL user that may run every command on every key,
// but has no channel permission: Redis 7's default for a new user.
var noChannelUser = redistest.Credentials{Username: "nochan", Password: "nochan-secret-pw"}

// startNoChannelACL starts a server with ACL users and adds noChannelUser.
func startNoChannelACL(t *testing.T) *redistest.Server {
	t.Helper()
	s := redistest.StartACL(t)
	err := s.Client(t).Do(testCtx(t), "ACL", "SETUSER", noChannelUser.Username, "on",
		">"+noChannelUser.Password, "~*", "resetchannels", "+@all").Err()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTopologySubscribeNoPermission: SUBSCRIBE refused with NOPERM (an ACL
// user without channel permission) fails Subscribe at once with a
// permission error that names the channel pattern to grant, instead of
// hanging until its context ends.
func TestTopologySubscribeNoPermission(t *testing.T) {
	verifyNoLeaks(t)
	s := startNoChannelACL(t)
	o := s.Options()
	o.Username, o.Password = noChannelUser.Username, noChannelUser.Password
	client := redis.NewClient(o)
	defer client.Close()
	d := redisdriver.NewDriver(client, nil)
	defer d.Close()

	for i := range 2 { // the second joins no failed leftover
		ctx, cancel := context.WithTimeout(context.Background(), wakeBound)
		start := time.Now()
		_, _, err := d.(driver.Notifier).Subscribe(ctx, "noperm/k")
		cancel()
		took := time.Since(start)
		if err == nil {
			t.Fatalf("Subscribe %d without channel permission succeeded", i)
		}
		if took > 5*time.Second {
			t.Errorf("Subscribe %d took %v to fail: %v", i, took, err)
		}
		var pe *redisdriver.ChannelPermissionError
		if !errors.As(err, &pe) {
			t.Fatalf("Subscribe %d: %v, want a *ChannelPermissionError", i, err)
		}
		if pe.Pattern != "dlock:*" || !strings.Contains(err.Error(), `"dlock:*"`) {
			t.Errorf("error does not name the pattern dlock:*: %v", err)
		}
		if !redis.IsPermissionError(err) {
			t.Errorf("error does not wrap the server's NOPERM: %v", err)
		}
	}
}

// TestTopologyReconnectBeforeConfirmation: SUBSCRIBE is sent into a
// partition, the waiter gives up before the confirmation (and
// unsubscribes), and the connection is then cut. The next Subscribe of the
// key is confirmed on the new connection and woken by a release: nothing
// is left waiting for an answer that the old connection took with it.
func TestTopologyReconnectBeforeConfirmation(t *testing.T) {
	verifyNoLeaks(t)
	s := redistest.StartProcess(t, nil)
	px := redistest.NewProxy(t, s.Addr())
	o := s.Options()
	o.Addr = px.Addr()
	client := redis.NewClient(o)
	d := redisdriver.NewDriver(client, nil)
	const key = "reconnect/pending"
	// The pub/sub connection exists before the partition.
	for _, w := range subscribeN(t, d, "reconnect/warm", 1) {
		w.cancel()
	}

	px.Partition()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, _, err := d.(driver.Notifier).Subscribe(ctx, key)
	cancel()
	if err == nil {
		t.Fatal("Subscribe through a partition succeeded")
	}
	px.Disconnect()
	px.Heal()

	ws := subscribeN(t, d, key, 2)
	direct := redisdriver.NewDriver(s.Client(t), nil)
	defer direct.Close()
	drain(ws)
	releaseOnce(t, direct, key)
	awaitWoken(t, ws, "by a release after the reconnect")

	for _, w := range ws {
		w.cancel()
	}
	d.Close()
	client.Close()
	awaitNoPubsub(t, []*redistest.Server{s})
}

// verifyNoLeaks checks, after every other cleanup of t, that the
// goroutines t started have ended. Call it first.
//
// Server processes that redistest shares across the test binary (the
// toxiproxy server, shared Redis servers) may start during the test and
// outlive it by design; TestMain's goleak check covers them once they are
// stopped.
func verifyNoLeaks(t *testing.T) {
	current := goleak.IgnoreCurrent()
	shared := goleak.IgnoreAnyFunction("github.com/dlock-go/dlock/internal/redistest.spawn.func1")
	t.Cleanup(func() { goleak.VerifyNone(t, current, shared) })
}

// TestOpenChecksChannelPermission: Open refuses an ACL user without
// permission for the driver's channels, as it refuses one that may not run
// scripts, with an error naming the channel pattern to grant and without
// the password.
func TestOpenChecksChannelPermission(t *testing.T) {
	verifyNoLeaks(t)
	s := startNoChannelACL(t)
	ctx := testCtx(t)
	for _, prefix := range []string{"", "app:"} {
		u := fmt.Sprintf("redis://%s:%s@%s", noChannelUser.Username, noChannelUser.Password, s.Addr())
		want := "dlock:*"
		if prefix != "" {
			u += "?prefix=" + prefix
			want = prefix + "*"
		}
		l, err := dlock.Open(ctx, u, nil)
		if err == nil {
			l.Close()
			t.Fatalf("Open as a user without channel permission (prefix %q) succeeded", prefix)
		}
		var pe *redisdriver.ChannelPermissionError
		if !errors.As(err, &pe) || pe.Pattern != want || !strings.Contains(err.Error(), want) {
			t.Errorf("Open (prefix %q): %v, want a *ChannelPermissionError naming %q", prefix, err, want)
		}
		if strings.Contains(err.Error(), noChannelUser.Password) {
			t.Errorf("Open error shows the password: %v", err)
		}
	}
	// With the permission granted, Open succeeds.
	err := s.Client(t).Do(ctx, "ACL", "SETUSER", noChannelUser.Username, "&dlock:*").Err()
	if err != nil {
		t.Fatal(err)
	}
	l, err := dlock.Open(ctx, fmt.Sprintf("redis://%s:%s@%s", noChannelUser.Username, noChannelUser.Password, s.Addr()), nil)
	if err != nil {
		t.Fatalf("Open after granting &dlock:*: %v", err)
	}
	l.Close()
}

// TestREADMEACLUser: the ACL rule by category that the package doc (Permissions) gives is enough for the
// driver: Open, a contended acquire woken by the release, and release.
func TestREADMEACLUser(t *testing.T) {
	verifyNoLeaks(t)
	s := redistest.StartACL(t)
	ctx := testCtx(t)
	rule := strings.Fields("on >app-secret-pw ~dlock:* &dlock:* +@scripting +@read +@write +@pubsub +time +ping")
	args := []any{"ACL", "SETUSER", "app"}
	for _, r := range rule {
		args = append(args, r)
	}
	if err := s.Client(t).Do(ctx, args...).Err(); err != nil {
		t.Fatal(err)
	}
	u := "redis://app:app-secret-pw@" + s.Addr()
	holder := open(t, u)
	waiter := open(t, u)
	lease, err := holder.TryAcquire(ctx, "acl/readme", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := goAcquire(ctx, waiter, "acl/readme", &dlock.LeaseOptions{Retry: noPolling})
	waitSubscribed(t, s.Client(t), "acl/readme")
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		if a.err != nil {
			t.Fatal(a.err)
		}
		if err := a.lease.Release(ctx); err != nil {
			t.Fatal(err)
		}
	case <-time.After(wakeBound):
		t.Fatal("waiter not woken by the release")
	}
}

// TestTopologySlotMoveAcquire: through the Locker, a waiter whose client
// has a stale slot map (the key's slot moved since it loaded it) is woken
// by the holder's release and gets the key, instead of hanging in
// Subscribe for its whole context.
func TestTopologySlotMoveAcquire(t *testing.T) {
	verifyNoLeaks(t)
	cl := redistest.StartCluster(t)
	const key = "move/acquire"
	stale := redis.NewClusterClient(cl.Options())
	waiter := mustNew(t, stale, &redisdriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute, Retry: noPolling}}})
	ctx := testCtx(t)
	warm, err := waiter.TryAcquire(ctx, "move/warm", nil) // loads the slot map
	if err != nil {
		t.Fatal(err)
	}
	warm.Release(ctx)
	admin := cl.Client(t)
	to := moveSlot(t, cl, keySlot(t, admin, key))

	fresh := redis.NewClusterClient(cl.Options())
	holder := mustNew(t, fresh, &redisdriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}}})
	lease, err := holder.TryAcquire(ctx, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, wakeBound)
	defer cancel()
	got := goAcquire(wctx, waiter, key, nil)
	// Release once the waiter listens on the slot's new owner.
	var owner *redistest.Server
	for _, n := range cl.Nodes() {
		if n.Addr() == to {
			owner = n
		}
	}
	oc := owner.Client(t)
	ch := "dlock:{" + key + "}:released"
	poll(t, "the waiter to subscribe on the new owner", func() error {
		m, err := oc.Do(ctx, "PUBSUB", "SHARDNUMSUB", ch).Slice()
		if err == nil && (len(m) != 2 || m[1] != int64(1)) {
			err = errNotYet
		}
		return err
	})
	released := time.Now()
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.err != nil {
		t.Fatalf("waiter did not get the key released %v earlier: %v", time.Since(released), a.err)
	}
	t.Logf("waiter got the key %v after the release", a.at.Sub(released))
	a.lease.Release(ctx)
	waiter.Close()
	holder.Close()
	stale.Close()
	fresh.Close()
	awaitNoPubsub(t, cl.Nodes())
}
