package redisdriver_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

func req(key, token string) driver.Request {
	return driver.Request{Key: key, Token: token, TTL: 10 * time.Second, Owner: "test"}
}

// TestKeyLayout: the lock, fence and channel of KEY are PREFIX{KEY},
// PREFIX{KEY}:fence and PREFIX{KEY}:released, with '%', '{' and '}' of KEY
// escaped, so that the hash tag is always all of KEY.
func TestKeyLayout(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), &redisdriver.Options{Prefix: "lay:"})
	defer d.Close()
	ctx := testCtx(t)
	for key, want := range map[string]string{
		"plain":        "lay:{plain}",
		"a{b}c":        "lay:{a%7Bb%7Dc}",
		"}x":           "lay:{%7Dx}",
		"{}":           "lay:{%7B%7D}",
		"50%":          "lay:{50%25}",
		"a%7Bb":        "lay:{a%257Bb}",
		"spaces and ü": "lay:{spaces and ü}",
	} {
		if _, err := d.Acquire(ctx, req(key, "t")); err != nil {
			t.Fatalf("Acquire %q: %v", key, err)
		}
		if n := admin.Exists(ctx, want, want+":fence").Val(); n != 2 {
			t.Errorf("key %q: %s and %s:fence not both there (%d)", key, want, want, n)
		}
		if err := d.Release(ctx, key, "t"); err != nil {
			t.Errorf("Release %q: %v", key, err)
		}
	}
	// Keys that escaping could confuse stay distinct locks.
	if _, err := d.Acquire(ctx, req("x{y", "t1")); err != nil {
		t.Fatal(err)
	}
	if res, err := d.Acquire(ctx, req("x%7By", "t2")); err != nil || !res.Acquired {
		t.Errorf("x%%7By is blocked by x{y: %v %+v", err, res)
	}
}

// TestClusterOddKeys: keys with braces work on Cluster, where the lock and
// fence keys must hash to one slot.
func TestClusterOddKeys(t *testing.T) {
	cl := redistest.SharedCluster(t)
	d := redisdriver.NewDriver(cl.Client(t), nil)
	defer d.Close()
	ctx := testCtx(t)
	for _, key := range []string{"}", "{", "}{", "{a}b", "a}b{c", "%7D", "{}"} {
		res, err := d.Acquire(ctx, req(key, "t"))
		if err != nil || !res.Acquired {
			t.Errorf("Acquire %q on Cluster: %v %+v", key, err, res)
			continue
		}
		if err := d.Release(ctx, key, "t"); err != nil {
			t.Errorf("Release %q on Cluster: %v", key, err)
		}
	}
}

// TestSharedSubscriptions: all waiters of a driver share one pub/sub
// connection; waiters of one key share one subscription, which ends with
// the last of them.
func TestSharedSubscriptions(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	c := s.Client(t)
	d := redisdriver.NewDriver(c, nil)
	defer d.Close()
	n := d.(driver.Notifier)
	ctx := testCtx(t)

	before := pubsubClients(t, admin)
	var cancels []func()
	chans := map[string][]<-chan struct{}{}
	for _, key := range []string{"sub/a", "sub/a", "sub/b", "sub/c", "sub/a"} {
		ch, cancel, err := n.Subscribe(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		cancels = append(cancels, cancel)
		chans[key] = append(chans[key], ch)
	}
	if got := pubsubClients(t, admin) - before; got != 1 {
		t.Errorf("%d pub/sub connections for 3 keys, want 1", got)
	}
	if m := admin.PubSubNumSub(ctx, "dlock:{sub/a}:released").Val(); m["dlock:{sub/a}:released"] != 1 {
		t.Errorf("sub/a has %d subscriptions on the server, want 1 shared", m["dlock:{sub/a}:released"])
	}

	// A release of sub/a wakes its three waiters and no other.
	if _, err := d.Acquire(ctx, req("sub/a", "t")); err != nil {
		t.Fatal(err)
	}
	if err := d.Release(ctx, "sub/a", "t"); err != nil {
		t.Fatal(err)
	}
	for i, ch := range chans["sub/a"] {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Errorf("waiter %d of sub/a not woken by the release", i)
		}
	}
	for _, k := range []string{"sub/b", "sub/c"} {
		select {
		case <-chans[k][0]:
			t.Errorf("waiter of %s woken by a release of sub/a", k)
		default:
		}
	}

	for _, cancel := range cancels {
		cancel()
	}
	// UNSUBSCRIBE is sent when the last waiter leaves; the server may
	// process it a moment later.
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := admin.PubSubNumSub(ctx, "dlock:{sub/a}:released", "dlock:{sub/b}:released").Val()
		if m["dlock:{sub/a}:released"] == 0 && m["dlock:{sub/b}:released"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriptions left after every waiter cancelled: %v", m)
		}
		time.Sleep(time.Millisecond)
	}
}

// pubsubClients counts the server's clients in pub/sub mode.
func pubsubClients(t *testing.T, admin *redis.Client) int {
	t.Helper()
	list, err := admin.ClientList(testCtx(t)).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, " sub=") && !strings.Contains(line, " sub=0 psub=0 ssub=0 ") {
			n++
		}
	}
	return n
}

// TestClusterSubscriptions: on Cluster, sharded subscriptions wake waiters
// of keys on every node.
func TestClusterSubscriptions(t *testing.T) {
	cl := redistest.SharedCluster(t)
	d := redisdriver.NewDriver(cl.Client(t), nil)
	defer d.Close()
	n := d.(driver.Notifier)
	ctx := testCtx(t)
	keys := []string{"csub/a", "csub/b", "csub/c", "csub/d", "csub/e", "csub/f", "csub/g", "csub/h"}
	chans := make([]<-chan struct{}, len(keys))
	for i, k := range keys {
		ch, cancel, err := n.Subscribe(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
		chans[i] = ch
	}
	for i, k := range keys {
		if _, err := d.Acquire(ctx, req(k, "t")); err != nil {
			t.Fatal(err)
		}
		if err := d.Release(ctx, k, "t"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-chans[i]:
		case <-time.After(5 * time.Second):
			t.Errorf("waiter of %s not woken on Cluster", k)
		}
	}
}

// TestCloseLeavesUserClient: closing the driver stops its goroutines
// (goleak checks) but leaves the caller's client open.
func TestCloseLeavesUserClient(t *testing.T) {
	s := redistest.Shared(t)
	c := s.Client(t)
	l := mustNew(t, c, nil)
	ctx := testCtx(t)
	// Make the driver start its pub/sub reader.
	holder, err := l.TryAcquire(ctx, "close/k", nil)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = l.Acquire(wctx, "close/k", nil)
	cancel()
	if !errors.Is(err, dlock.ErrNotAcquired) {
		t.Fatalf("Acquire of a held key: %v", err)
	}
	holder.Release(ctx)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Errorf("the caller's client no longer works after Close: %v", err)
	}
	if _, err := l.TryAcquire(ctx, "close/k", nil); !errors.Is(err, dlock.ErrClosed) {
		t.Errorf("TryAcquire after Close: %v, want ErrClosed", err)
	}
	d := redisdriver.NewDriver(c, nil)
	d.Close()
	if _, err := d.Acquire(ctx, req("close/k", "t")); !errors.Is(err, dlock.ErrClosed) {
		t.Errorf("driver Acquire after Close: %v, want ErrClosed", err)
	}
}

func TestInvalidOptions(t *testing.T) {
	s := redistest.Shared(t)
	ctx := testCtx(t)
	for name, o := range map[string]*redisdriver.Options{
		"BracePrefix":           {Prefix: "a{"},
		"NegativeFenceExpiry":   {FenceExpiry: -time.Second},
		"NegativeReplicaAcks":   {ReplicaAcks: -1},
		"NegativeReplicaWait":   {ReplicaTimeout: -time.Second},
		"TinyFenceExpiry":       {FenceExpiry: time.Microsecond},
		"InvalidLockOptionsTTL": {Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: -1}}},
	} {
		// Driver options are refused by New; the Locker's, as by
		// dlock.New, at every call.
		l, err := redisdriver.New(s.Client(t), o)
		if err == nil {
			_, err = l.TryAcquire(ctx, "opts/k", nil)
			l.Close()
		}
		if !errors.Is(err, dlock.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := redisdriver.New(nil, nil); !errors.Is(err, dlock.ErrInvalid) {
		t.Errorf("nil client: %v, want ErrInvalid", err)
	}
}

func TestFenceExpiry(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), &redisdriver.Options{FenceExpiry: time.Hour})
	defer d.Close()
	ctx := testCtx(t)
	if _, err := d.Acquire(ctx, req("fexp/k", "t")); err != nil {
		t.Fatal(err)
	}
	defer d.Release(ctx, "fexp/k", "t")
	ttl := admin.PTTL(ctx, "dlock:{fexp/k}:fence").Val()
	if ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("fence key TTL %v, want about 1h", ttl)
	}
}

// TestReplicaAcks: with a replica in sync an acquire waits for it; asking
// for more replicas than exist fails with ErrUnavailable and leaves the key
// free.
func TestReplicaAcks(t *testing.T) {
	s := redistest.SharedSentinel(t)
	ctx := testCtx(t)
	d := redisdriver.NewDriver(s.Client(t), &redisdriver.Options{ReplicaAcks: 1, ReplicaTimeout: 2 * time.Second})
	defer d.Close()
	res, err := d.Acquire(ctx, req("acks/one", "t"))
	if err != nil || !res.Acquired {
		t.Fatalf("acquire with 1 replica ack: %v %+v", err, res)
	}
	replica := s.Replica().Client(t)
	if v := replica.Get(ctx, "dlock:{acks/one}").Val(); !strings.HasPrefix(v, "t\n") {
		t.Errorf("replica has lock %q right after the acquire, want token t", v)
	}
	d.Release(ctx, "acks/one", "t")

	d2 := redisdriver.NewDriver(s.Client(t), &redisdriver.Options{ReplicaAcks: 2, ReplicaTimeout: 50 * time.Millisecond})
	defer d2.Close()
	_, err = d2.Acquire(ctx, req("acks/two", "t"))
	if !errors.Is(err, dlock.ErrUnavailable) {
		t.Errorf("acquire with 2 acks and 1 replica: %v, want ErrUnavailable", err)
	}
	if h, ok, err := d2.(driver.Inspector).Inspect(ctx, "acks/two"); err != nil || ok {
		t.Errorf("key held after the failed acquire: %+v %v %v", h, ok, err)
	}
}

func TestReplicaAcksCluster(t *testing.T) {
	cl := redistest.SharedCluster(t)
	d := redisdriver.NewDriver(cl.Client(t), &redisdriver.Options{ReplicaAcks: 1, ReplicaTimeout: 20 * time.Millisecond})
	defer d.Close()
	// The test Cluster has no replicas: every acquire fails, cleanly.
	_, err := d.Acquire(testCtx(t), req("acks/cluster", "t"))
	if !errors.Is(err, dlock.ErrUnavailable) {
		t.Errorf("acquire with 1 ack on a Cluster without replicas: %v, want ErrUnavailable", err)
	}
}

// TestSubscriptionSurvivesReconnect: when the pub/sub connection is cut,
// go-redis reconnects and subscribes again; waiters are woken then (a
// release may have been missed), and later releases still reach them.
func TestSubscriptionSurvivesReconnect(t *testing.T) {
	s := redistest.StartProcess(t, nil) // CLIENT KILL must not hit others' connections
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	ctx := testCtx(t)
	ch, cancel, err := d.(driver.Notifier).Subscribe(ctx, "reconnect/k")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("waiter not woken after its subscription was re-established")
	}
	waitSubscribed(t, admin, "reconnect/k")
	if _, err := d.Acquire(ctx, req("reconnect/k", "t")); err != nil {
		t.Fatal(err)
	}
	if err := d.Release(ctx, "reconnect/k", "t"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("release after the reconnect did not wake the waiter")
	}
}

// TestFences: by default a fence is the server's clock in microseconds,
// or one more than the last fence if that is not below it; with a floor it
// is the larger of the floor and one more than the last, whatever the
// clock; with NoFence it is 0 and leaves the fence key alone.
func TestFences(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	ctx := testCtx(t)
	key := "fences/" + strconv.FormatInt(time.Now().UnixNano(), 36) // fence keys outlive a run
	grant := func(r driver.Request, floor ...uint64) uint64 {
		t.Helper()
		acquire := d.Acquire
		if len(floor) > 0 {
			acquire = func(ctx context.Context, r driver.Request) (driver.Result, error) {
				return acquireFloor(ctx, t, d, r, floor[0])
			}
		}
		res, err := acquire(ctx, r)
		if err != nil || !res.Acquired {
			t.Fatalf("Acquire %+v = %+v, %v", r, res, err)
		}
		if err := d.Release(ctx, key, r.Token); err != nil {
			t.Fatal(err)
		}
		return res.Fence
	}
	before := uint64(time.Now().Add(-time.Minute).UnixMicro())
	if f := grant(req(key, "a")); f < before || f > uint64(time.Now().Add(time.Minute).UnixMicro()) {
		t.Errorf("fence %d is not the server's clock in µs (about %d)", f, before)
	}
	// A floor ahead of the clock by less than the TTL (10s) is granted.
	high := uint64(time.Now().Add(5 * time.Second).UnixMicro())
	floored := req(key, "b")
	if f := grant(floored, high); f != high {
		t.Errorf("fence with floor %d = %d; want the floor", high, f)
	}
	if f := grant(floored, high); f != high+1 {
		t.Errorf("fence with floor %d after fence %d = %d; want %d", high, high, f, high+1)
	}
	// The clock is behind the last fence: one more than it.
	if f := grant(req(key, "c")); f != high+2 {
		t.Errorf("fence by clock after fence %d = %d; want %d", high+1, f, high+2)
	}
	// A floor an hour ahead is not trusted: at most the clock plus the TTL.
	far := req(key, "b")
	if f, limit := grant(far, uint64(time.Now().Add(time.Hour).UnixMicro())), uint64(time.Now().Add(11*time.Second).UnixMicro()); f <= high+2 || f > limit {
		t.Errorf("fence with a floor an hour ahead = %d; want above %d and at most the clock plus the TTL (%d)", f, high+2, limit)
	}
	// Fences are compared as digit strings: by length, then lexically.
	fk := "dlock:{" + key + "}:fence"
	admin.Set(ctx, fk, "8999999999999999", 0)
	if f := grant(req(key, "d")); f != 9000000000000000 {
		t.Errorf("fence after 8999999999999999 = %d; want 9000000000000000", f)
	}
	admin.Set(ctx, fk, "999", 0)
	if f := grant(req(key, "d")); f < before || f > high {
		t.Errorf("fence after 999 = %d; want the clock", f)
	}
	admin.Set(ctx, fk, "9000000000000000", 0)
	bare := req(key, "e")
	bare.NoFence = true
	if f := grant(bare); f != 0 {
		t.Errorf("fence with NoFence = %d; want 0", f)
	}
	if v := admin.Get(ctx, fk).Val(); v != "9000000000000000" {
		t.Errorf("fence key after a NoFence grant = %q; want it untouched", v)
	}
}
