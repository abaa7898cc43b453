package redisdriver_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// handoffDriver is a driver on a client of its own, with its round trips
// counted.
type handoffDriver struct {
	driver.Locker
	driver.Handoff
	trips *tripCounter
}

func newHandoffDriver(t *testing.T, c redis.UniversalClient) *handoffDriver {
	t.Helper()
	t.Cleanup(func() { c.Close() })
	h := &tripCounter{}
	c.AddHook(h)
	d := redisdriver.NewDriver(c, nil)
	t.Cleanup(func() { d.Close() })
	hd, ok := d.(driver.Handoff)
	if !ok {
		t.Fatal("the Redis driver does not implement driver.Handoff")
	}
	return &handoffDriver{Locker: d, Handoff: hd, trips: h}
}

// Close resolves the ambiguity of the two embedded interfaces.
func (h *handoffDriver) Close() error { return h.Locker.Close() }

// queue makes a busy attempt of a waiter that accepts grants: it must be
// refused (the key is held) and queues the waiter with its attempt.
func queue(t *testing.T, ctx context.Context, d driver.Locker, key, token string, attempt uint64, ttl time.Duration) {
	t.Helper()
	queueFor(t, ctx, d, key, token, attempt, ttl, 10*time.Second)
}

// queueFor is queue with the time the waiter may sleep. The queue serves
// waiters in the order of their first queued attempt (the server's time in
// microseconds; two in one microsecond in the order of their tags),
// whatever their wait.
func queueFor(t *testing.T, ctx context.Context, d driver.Locker, key, token string, attempt uint64, ttl, wait time.Duration) {
	t.Helper()
	r := driver.Request{Key: key, Token: token, TTL: ttl, Owner: "owner of " + token}
	res, err := acquireQueued(ctx, t, d, r, driver.Queued{Wait: wait, Attempt: attempt})
	if err != nil || res.Acquired {
		t.Fatalf("waiter %s's attempt %d = %+v, %v; want busy (queued)", token, attempt, res, err)
	}
}

// turnWithin returns the next Turn of turns, failing after d.
func turnWithin(t *testing.T, turns <-chan driver.Turn, d time.Duration, who string) driver.Turn {
	t.Helper()
	select {
	case turn := <-turns:
		return turn
	case <-time.After(d):
		t.Fatalf("%s: no Turn within %v", who, d)
		return driver.Turn{}
	}
}

// waiterChannel is the channel of the waiter with token (see the package
// docs: PREFIX{KEY}:w:TAG, TAG a hash of the token).
func waiterChannel(key, token string) string {
	return "dlock:{" + key + "}:w:" + waiterTag(token)
}

// waiterTag names the waiter with token in its key's queue and attempts.
func waiterTag(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:8])
}

// lockValue reads the lock of key as stored: token, fence, since, owner.
func lockValue(t *testing.T, ctx context.Context, admin redis.UniversalClient, key string) (token string, fence uint64, since time.Time, owner string) {
	t.Helper()
	v, err := admin.Get(ctx, "dlock:{"+key+"}").Result()
	if err != nil {
		t.Fatalf("GET lock %q: %v", key, err)
	}
	parts := strings.SplitN(v, "\n", 4)
	if len(parts) != 4 {
		t.Fatalf("lock %q holds %d fields, want 4", key, len(parts))
	}
	fence, _ = strconv.ParseUint(parts[1], 10, 64)
	sec, usec, _ := strings.Cut(parts[2], " ")
	s, _ := strconv.ParseInt(sec, 10, 64)
	us, _ := strconv.ParseInt(usec, 10, 64)
	return parts[0], fence, time.Unix(s, us*1000), parts[3]
}

// TestHandoffGrantInOneRoundTrip: a release hands the key to the first
// queued waiter that accepts grants, in the release's own round trip: the
// waiter learns it from its subscription, with no command of its own, and
// holds the key for its queued attempt's TTL, with that attempt's owner,
// a fence above the last one and SINCE the release.
func TestHandoffGrantInOneRoundTrip(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	waiter := newHandoffDriver(t, redis.NewClient(s.Options()))
	ctx := testCtx(t)
	key := uniqueKey("handoff/direct/")
	const ttl = 7 * time.Second
	// The release script is cached by the server, so the release below
	// is one EVALSHA, not EVALSHA and EVAL after NOSCRIPT.
	if err := holder.Release(ctx, key, "nobody"); !errors.Is(err, driver.ErrNotHeld) {
		t.Fatalf("Release of a free key = %v, want ErrNotHeld", err)
	}
	res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second, Owner: "h"})
	if err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	turns, cancel, err := waiter.SubscribeHandoff(ctx, key, "waiter")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	queue(t, ctx, waiter, key, "waiter", 1, ttl)
	queue(t, ctx, waiter, key, "waiter", 2, ttl) // replaces attempt 1
	holderTrips, waiterTrips := holder.trips.n.Load(), waiter.trips.n.Load()
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	turn := turnWithin(t, turns, 5*time.Second, "the first queued waiter")
	if n := holder.trips.n.Load() - holderTrips; n != 1 {
		t.Errorf("the release took %d round trips, want 1", n)
	}
	if n := waiter.trips.n.Load() - waiterTrips; n != 0 {
		t.Errorf("the waiter made %d round trips to get the key, want 0", n)
	}
	if !turn.Granted || turn.Attempt != 2 || turn.Fence <= res.Fence {
		t.Fatalf("Turn = %+v; want Granted on attempt 2 (the last queued) with a fence above the holder's %d", turn, res.Fence)
	}
	pttl := admin.PTTL(ctx, "dlock:{"+key+"}").Val()
	if pttl > ttl || pttl < ttl-time.Second {
		t.Errorf("granted lock's PTTL = %v, want about the queued attempt's TTL %v (counted from the release)", pttl, ttl)
	}
	token, fence, since, owner := lockValue(t, ctx, admin, key)
	if token != "waiter" || fence != turn.Fence || owner != "owner of waiter" {
		t.Errorf("lock = token %q fence %d owner %q; want the waiter's token, the Turn's fence %d and its owner", token, fence, owner, turn.Fence)
	}
	now, err := admin.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if d := now.Sub(since); d < 0 || d > time.Since(released)+time.Second {
		t.Errorf("lock SINCE %v is %v before the server's time now: not the release's time", since, d)
	}
	if n := admin.Exists(ctx, "dlock:{"+key+"}:queue", "dlock:{"+key+"}:attempts").Val(); n != 0 {
		t.Errorf("%d of the queue and its attempts remain after the only waiter was granted", n)
	}
	// The grant is the waiter's as if its attempt had taken the key: a
	// repeated attempt returns the same fence, the release works.
	again, err := waiter.AcquireQueued(ctx, driver.Request{Key: key, Token: "waiter", TTL: ttl, Owner: "owner of waiter"}, driver.Queued{Attempt: 3})
	if err != nil || !again.Acquired || again.Fence != turn.Fence {
		t.Errorf("the waiter's next attempt = %+v, %v; want the granted key with fence %d", again, err, turn.Fence)
	}
	if err := waiter.Release(ctx, key, "waiter"); err != nil {
		t.Fatal(err)
	}
}

// TestHandoffSkipsWaiterThatLeft: a queued waiter whose subscription is
// gone is not granted the key (it would hold it for a TTL that nobody
// uses): the release hands it to the next waiter, and the one that left
// holds nothing.
func TestHandoffSkipsWaiterThatLeft(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	a := newHandoffDriver(t, redis.NewClient(s.Options()))
	b := newHandoffDriver(t, redis.NewClient(s.Options()))
	ctx := testCtx(t)
	key := uniqueKey("handoff/left/")
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	turnsA, cancelA, err := a.SubscribeHandoff(ctx, key, "a")
	if err != nil {
		t.Fatal(err)
	}
	turnsB, cancelB, err := b.SubscribeHandoff(ctx, key, "b")
	if err != nil {
		t.Fatal(err)
	}
	defer cancelB()
	queueFor(t, ctx, a, key, "a", 1, 10*time.Second, 5*time.Second) // first in the queue
	queue(t, ctx, b, key, "b", 1, 10*time.Second)
	cancelA()
	// cancel returned after the server confirmed the UNSUBSCRIBE.
	waitUnsubscribed(t, admin, waiterChannel(key, "a"))
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	turn := turnWithin(t, turnsB, 5*time.Second, "the second waiter, after the first left")
	if !turn.Granted || turn.Attempt != 1 {
		t.Fatalf("second waiter's Turn = %+v, want Granted on attempt 1", turn)
	}
	if token, _, _, _ := lockValue(t, ctx, admin, key); token != "b" {
		t.Errorf("the key is held by %q, want the second waiter", token)
	}
	if err := a.Release(ctx, key, "a"); !errors.Is(err, driver.ErrNotHeld) {
		t.Errorf("Release by the waiter that left = %v, want ErrNotHeld (it must hold nothing)", err)
	}
	select {
	case turn := <-turnsA:
		t.Errorf("the waiter that left got %+v after cancel", turn)
	default:
	}
	if n := admin.HLen(ctx, "dlock:{"+key+"}:attempts").Val(); n != 0 {
		t.Errorf("%d attempts stored after both waiters left the queue", n)
	}
	if err := b.Release(ctx, key, "b"); err != nil {
		t.Fatal(err)
	}
}

// waitUnsubscribed returns once nobody listens on ch: the server handles
// an UNSUBSCRIBE with no event for others, so it polls PUBSUB NUMSUB.
func waitUnsubscribed(t *testing.T, admin *redis.Client, ch string) {
	t.Helper()
	ctx := testCtx(t)
	for {
		m, err := admin.PubSubNumSub(ctx, ch).Result()
		if err != nil {
			t.Fatal(err)
		}
		if m[ch] == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHandoffGrantBeforeUnsubscribeDelivered: a grant published while the
// waiter's UNSUBSCRIBE was on its way reaches the driver late. cancel
// waits for the UNSUBSCRIBE's confirmation, so the grant is in the
// channel when it returns, for the caller to release; once it does, the
// next waiter is handed the key at once.
func TestHandoffGrantBeforeUnsubscribeDelivered(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	px := redistest.NewProxy(t, s.Addr())
	o := s.Options()
	o.Addr = px.Addr()
	slow := newHandoffDriver(t, redis.NewClient(o)) // its replies and messages come late
	next := newHandoffDriver(t, redis.NewClient(s.Options()))
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	ctx := testCtx(t)
	key := uniqueKey("handoff/late/")
	const ttl = 30 * time.Second
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: ttl}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	turnsSlow, cancelSlow, err := slow.SubscribeHandoff(ctx, key, "slow")
	if err != nil {
		t.Fatal(err)
	}
	turnsNext, cancelNext, err := next.SubscribeHandoff(ctx, key, "next")
	if err != nil {
		t.Fatal(err)
	}
	defer cancelNext()
	queueFor(t, ctx, slow, key, "slow", 1, ttl, 5*time.Second) // first in the queue
	queue(t, ctx, next, key, "next", 1, ttl)
	const late = time.Second
	px.Latency(late)
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	// The grant went to "slow", still subscribed at the server; its
	// message is held up in the proxy while the waiter cancels.
	if token, _, _, _ := lockValue(t, ctx, admin, key); token != "slow" {
		t.Fatalf("the release granted %q, want the first waiter", token)
	}
	cancelSlow()
	select {
	case turn := <-turnsSlow:
		if !turn.Granted || turn.Attempt != 1 {
			t.Fatalf("after cancel the channel holds %+v, want the grant on attempt 1", turn)
		}
	default:
		t.Fatal("after cancel the channel holds no grant, though the key is the waiter's")
	}
	if token, _, _, _ := lockValue(t, ctx, admin, key); token != "slow" {
		t.Fatalf("the key is held by %q after cancel, want the grant, which the driver leaves to the caller", token)
	}
	cancelled := time.Now()
	if err := slow.Release(ctx, key, "slow"); err != nil {
		t.Fatal(err)
	}
	turn := turnWithin(t, turnsNext, 5*time.Second, "the next waiter, after the grant was released")
	if !turn.Granted {
		t.Fatalf("next waiter's Turn = %+v, want Granted", turn)
	}
	t.Logf("the next waiter was granted %v after the cancel", time.Since(cancelled))
	if token, _, _, _ := lockValue(t, ctx, admin, key); token != "next" {
		t.Errorf("the key is held by %q, want the next waiter", token)
	}
	select {
	case turn := <-turnsSlow:
		t.Errorf("the cancelled waiter got %+v after cancel returned", turn)
	default:
	}
	px.Heal()
	if err := next.Release(ctx, key, "next"); err != nil {
		t.Fatal(err)
	}
}

// TestHandoffGrantStaysAfterCancel: a grant delivered before cancel stays
// in the channel for the caller to find and release; cancel neither
// drops it nor releases it.
func TestHandoffGrantStaysAfterCancel(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	waiter := newHandoffDriver(t, redis.NewClient(s.Options()))
	ctx := testCtx(t)
	key := uniqueKey("handoff/stays/")
	turns, cancel, err := waiter.SubscribeHandoff(ctx, key, "waiter")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	queue(t, ctx, waiter, key, "waiter", 1, 10*time.Second)
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	// The grant is the only message the release sends: wait until it is
	// in the channel, unread (there is no event for that but reading it).
	for deadline := time.Now().Add(5 * time.Second); len(turns) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no turn 5s after the release")
		}
	}
	cancel()
	turn := turnWithin(t, turns, time.Second, "the cancelled waiter's channel")
	if !turn.Granted || turn.Attempt != 1 {
		t.Fatalf("after cancel the channel holds %+v, want the grant", turn)
	}
	if token, _, _, _ := lockValue(t, ctx, admin, key); token != "waiter" {
		t.Fatalf("the key is held by %q after cancel, want the waiter, whose grant is in its channel", token)
	}
	if err := waiter.Release(ctx, key, "waiter"); err != nil {
		t.Fatalf("releasing the grant found after cancel: %v", err)
	}
}

// TestHandoffNeverGrantsAttemptZero: a waiter whose attempts carry no
// attempt number (an older client, a plain Subscribe) is only woken by a
// release, never granted: it could not tell which attempt to count its
// lease from.
func TestHandoffNeverGrantsAttemptZero(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	waiter := newHandoffDriver(t, redis.NewClient(s.Options()))
	ctx := testCtx(t)
	key := uniqueKey("handoff/zero/")
	lock := "dlock:{" + key + "}"
	t.Run("Subscribe", func(t *testing.T) {
		if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second}); err != nil || !res.Acquired {
			t.Fatalf("holder: %+v %v", res, err)
		}
		woken, cancel, err := waiter.Locker.(driver.Notifier).Subscribe(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
		queue(t, ctx, waiter, key, "plain", 0, 10*time.Second)
		if err := holder.Release(ctx, key, "holder"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-woken:
		case <-time.After(5 * time.Second):
			t.Fatal("the queued waiter was not woken")
		}
		if n := admin.Exists(ctx, lock).Val(); n != 0 {
			t.Errorf("the key is held after a release with only an attempt-0 waiter queued")
		}
	})
	t.Run("SubscribeHandoff", func(t *testing.T) {
		if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second}); err != nil || !res.Acquired {
			t.Fatalf("holder: %+v %v", res, err)
		}
		turns, cancel, err := waiter.SubscribeHandoff(ctx, key, "zero")
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
		queue(t, ctx, waiter, key, "zero", 0, 10*time.Second)
		if err := holder.Release(ctx, key, "holder"); err != nil {
			t.Fatal(err)
		}
		if turn := turnWithin(t, turns, 5*time.Second, "the queued waiter"); turn != (driver.Turn{}) {
			t.Errorf("Turn = %+v, want a plain wake-up", turn)
		}
		if n := admin.Exists(ctx, lock).Val(); n != 0 {
			t.Errorf("the key is held after a release with only an attempt-0 waiter queued")
		}
	})
	t.Run("FenceFloor", func(t *testing.T) {
		// A quorum's node request proposes a floor: never queued,
		// so never granted either.
		if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second}); err != nil || !res.Acquired {
			t.Fatalf("holder: %+v %v", res, err)
		}
		turns, cancel, err := waiter.SubscribeHandoff(ctx, key, "floor")
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
		r := driver.Request{Key: key, Token: "floor", TTL: 10 * time.Second}
		if res, err := acquireFloor(ctx, t, waiter.Locker, r, 1); err != nil || res.Acquired {
			t.Fatalf("attempt = %+v, %v; want busy", res, err)
		}
		if err := holder.Release(ctx, key, "holder"); err != nil {
			t.Fatal(err)
		}
		if turn := turnWithin(t, turns, 5*time.Second, "the queued waiter"); turn != (driver.Turn{}) {
			t.Errorf("Turn = %+v, want a plain wake-up", turn)
		}
		if n := admin.Exists(ctx, lock).Val(); n != 0 {
			t.Errorf("the key is held after a release with only a waiter with a floor queued")
		}
	})
}

// TestHandoffCluster: the handoff works on Cluster, where the release
// script publishes with SPUBLISH on the key's node.
func TestHandoffCluster(t *testing.T) {
	cl := redistest.SharedCluster(t)
	holder := newHandoffDriver(t, redis.NewClusterClient(cl.Options()))
	waiter := newHandoffDriver(t, redis.NewClusterClient(cl.Options()))
	ctx := testCtx(t)
	// Keys on different slots, so on different nodes.
	for i := range 3 {
		key := uniqueKey("handoff/cluster/" + strconv.Itoa(i) + "/")
		res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second})
		if err != nil || !res.Acquired {
			t.Fatalf("holder: %+v %v", res, err)
		}
		turns, cancel, err := waiter.SubscribeHandoff(ctx, key, "waiter")
		if err != nil {
			t.Fatal(err)
		}
		queue(t, ctx, waiter, key, "waiter", 1, 10*time.Second)
		trips := waiter.trips.n.Load()
		if err := holder.Release(ctx, key, "holder"); err != nil {
			t.Fatal(err)
		}
		turn := turnWithin(t, turns, 5*time.Second, "the queued waiter on "+key)
		cancel()
		if !turn.Granted || turn.Attempt != 1 || turn.Fence <= res.Fence {
			t.Fatalf("Turn = %+v, want Granted on attempt 1 with a fence above %d", turn, res.Fence)
		}
		if n := waiter.trips.n.Load() - trips; n != 0 {
			t.Errorf("the waiter made %d round trips to get the key, want 0", n)
		}
		h, ok, err := waiter.Locker.(driver.Inspector).Inspect(ctx, key)
		if err != nil || !ok || h.Fence != turn.Fence || h.Owner != "owner of waiter" {
			t.Errorf("Inspect = %+v %v %v; want the waiter as holder, fence %d", h, ok, err, turn.Fence)
		}
		if err := waiter.Release(ctx, key, "waiter"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHandoffNotWithReplicaAcks: with ReplicaAcks an acquire is granted
// only once replicas have it, which a release's grant cannot wait for: the
// driver refuses handoff (dlock then subscribes plainly) and stores no
// attempt to grant on.
func TestHandoffNotWithReplicaAcks(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	c := s.Client(t)
	d := redisdriver.NewDriver(c, &redisdriver.Options{ReplicaAcks: 1})
	t.Cleanup(func() { d.Close() })
	ctx := testCtx(t)
	if _, _, err := d.(driver.Handoff).SubscribeHandoff(ctx, "k", "t"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("SubscribeHandoff with ReplicaAcks = %v, want errors.ErrUnsupported", err)
	}
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	key := uniqueKey("handoff/acks/")
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	queue(t, ctx, d, key, "waiter", 1, 10*time.Second)
	if n := admin.ZCard(ctx, "dlock:{"+key+"}:queue").Val(); n != 1 {
		t.Fatalf("queue has %d waiters, want 1", n)
	}
	// The queued entry keeps only the waiter's deadline, no attempt.
	if a := admin.HGet(ctx, "dlock:{"+key+"}:attempts", waiterTag("waiter")).Val(); strings.Contains(a, "\n") {
		t.Errorf("attempt %q stored with ReplicaAcks: a release would grant without WAIT", a)
	}
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	if n := admin.Exists(ctx, "dlock:{"+key+"}").Val(); n != 0 {
		t.Error("a release granted the key to a waiter with ReplicaAcks")
	}
}

// TestHandoffLateGrantOfOwnLeaseKept: a release grants the key to a
// waiter on its queued attempt while its next attempt is on the way; that
// attempt finds the key granted to its token and returns it, and the
// caller keeps it as its lease and cancels its subscription. The grant's
// message, slower, reaches the driver after that: it is that same lease
// and must not be released (which would let another waiter in while the
// lease is held). cancel need not wait for the end of the subscription
// of a waiter whose Acquire returned the key: no later grant can be made
// to its token, and this one is dropped.
func TestHandoffLateGrantOfOwnLeaseKept(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	px := redistest.NewProxy(t, s.Addr())
	// The waiter's commands go straight to the server, its pub/sub
	// connection (dialled while viaProxy is set) through the proxy.
	var viaProxy atomic.Bool
	o := s.Options()
	o.PoolSize = 1
	o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if viaProxy.Load() {
			addr = px.Addr()
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	waiter := newHandoffDriver(t, redis.NewClient(o))
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	ctx := testCtx(t)
	key := uniqueKey("handoff/own/")
	const ttl = 30 * time.Second
	if err := waiter.Release(ctx, key, "nobody"); !errors.Is(err, driver.ErrNotHeld) { // dials the command connection
		t.Fatalf("Release of a free key = %v, want ErrNotHeld", err)
	}
	viaProxy.Store(true)
	turns, cancel, err := waiter.SubscribeHandoff(ctx, key, "w")
	viaProxy.Store(false)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: ttl}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	queue(t, ctx, waiter, key, "w", 1, ttl)
	const late = 500 * time.Millisecond
	px.Latency(late)
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	_, granted, _, _ := lockValue(t, ctx, admin, key)
	res, err := waiter.AcquireQueued(ctx, driver.Request{Key: key, Token: "w", TTL: ttl}, driver.Queued{Wait: 10 * time.Second, Attempt: 2})
	if err != nil || !res.Acquired || res.Fence != granted {
		t.Fatalf("the waiter's next attempt = %+v, %v; want the key granted on its first, fence %d", res, err, granted)
	}
	cancel()
	select {
	case turn := <-turns:
		t.Fatalf("the grant came before cancel (%+v): this test is about one that comes after", turn)
	default:
	}
	// The grant's message reaches the driver about `late` after the
	// release; nothing outside the driver shows it handled, so give it
	// ample time, then check that the lease was not released.
	time.Sleep(4 * late)
	select {
	case turn := <-turns:
		t.Errorf("after cancel the waiter got %+v", turn)
	default:
	}
	if token, fence, _, _ := lockValue(t, ctx, admin, key); token != "w" || fence != granted {
		t.Fatalf("the key is held by %q fence %d, want the waiter's lease (fence %d): the driver released it", token, fence, granted)
	}
	px.Heal()
	if err := waiter.Release(ctx, key, "w"); err != nil {
		t.Fatalf("the waiter's release of its lease: %v", err)
	}
}
