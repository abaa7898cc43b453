package redisdriver_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// lossyWaiter is a Locker whose commands go straight to the server and
// whose pub/sub connection goes through px, so that its notifications can
// be lost while its commands still work.
func lossyWaiter(t *testing.T, s *redistest.Server, px *redistest.Proxy) *dlock.Locker {
	t.Helper()
	var viaProxy atomic.Bool
	o := s.Options()
	o.PoolSize = 1 // the one command connection, dialled directly below
	o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if viaProxy.Load() {
			addr = px.Addr()
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(testCtx(t)).Err(); err != nil {
		t.Fatal(err)
	}
	viaProxy.Store(true) // every later dial is the notifier's
	l := dlock.New(redisdriver.NewDriver(c, nil), nil)
	t.Cleanup(func() { l.Close() })
	return l
}

// waitAttemptQueued returns once key's queue holds an attempt to grant:
// an entry of the attempts hash with more than a deadline (a plain
// waiter's entry, such as a first attempt made before subscribing, is
// only its deadline).
func waitAttemptQueued(t *testing.T, admin *redis.Client, key string) {
	t.Helper()
	ctx := testCtx(t)
	for !slices.ContainsFunc(admin.HVals(ctx, "dlock:{"+key+"}:attempts").Val(), func(v string) bool { return strings.Contains(v, "\n") }) {
		if ctx.Err() != nil {
			t.Fatal("the waiter's attempt was never queued")
		}
		time.Sleep(time.Millisecond)
	}
}

// loseGrant holds key with holder, lets waiter queue on it, and releases it
// while the waiter's pub/sub connection is slowed, then cuts that
// connection: the grant's PUBLISH counted the waiter as a receiver, and
// its message is lost with the connection. It returns the grant's fence.
func loseGrant(t *testing.T, ctx context.Context, admin *redis.Client, px *redistest.Proxy, holder *handoffDriver, key, owner string) uint64 {
	t.Helper()
	waitAttemptQueued(t, admin, key)
	px.Latency(time.Second)
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	px.Disconnect()
	_, fence, _, got := lockValue(t, ctx, admin, key)
	if got != owner {
		t.Fatalf("the release granted the key to %q, want the waiter %q", got, owner)
	}
	return fence
}

// TestHandoffLostGrant: the grant's message is lost with the waiter's
// pub/sub connection, after the server counted it delivered. A waiter that
// gives up then must not leave the key held by its token for a whole TTL
// with nobody using it; a waiter that goes on finds the key its own with
// its next attempt.
func TestHandoffLostGrant(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	const ttl = 30 * time.Second
	opts := &dlock.Options{TTL: ttl, Owner: "lossy waiter", Retry: noPolling}

	t.Run("GivesUp", func(t *testing.T) {
		px := redistest.NewProxy(t, s.Addr())
		waiter := lossyWaiter(t, s, px)
		ctx := testCtx(t)
		key := uniqueKey("handoff/lost/gives-up/")
		if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: ttl}); err != nil || !res.Acquired {
			t.Fatalf("holder: %+v %v", res, err)
		}
		wctx, giveUp := context.WithCancel(ctx)
		defer giveUp()
		got := goAcquire(wctx, waiter, key, opts)
		loseGrant(t, ctx, admin, px, holder, key, opts.Owner)
		giveUp()
		a := <-got
		if a.err == nil {
			a.lease.Release(ctx)
			t.Fatal("the waiter got the lease: the grant's message was not lost, which this test is about")
		}
		if !errors.Is(a.err, dlock.ErrNotAcquired) {
			t.Fatalf("Acquire = %v, want ErrNotAcquired", a.err)
		}
		// The key is freed in the background (nothing outside the driver
		// shows when): within a few seconds, far below the TTL.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if ownerOf(t, ctx, admin, key) != opts.Owner {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the waiter gave up, but the key stays granted to its token (for the TTL, %v)", ttl)
			}
		}
		px.Heal()
	})

	t.Run("GoesOn", func(t *testing.T) {
		px := redistest.NewProxy(t, s.Addr())
		waiter := lossyWaiter(t, s, px)
		ctx := testCtx(t)
		key := uniqueKey("handoff/lost/goes-on/")
		if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: ttl}); err != nil || !res.Acquired {
			t.Fatalf("holder: %+v %v", res, err)
		}
		got := goAcquire(ctx, waiter, key, opts)
		fence := loseGrant(t, ctx, admin, px, holder, key, opts.Owner)
		px.Heal() // the notifier reconnects, and wakes its waiter
		a := <-got
		if a.err != nil {
			t.Fatalf("Acquire after the grant was lost: %v", a.err)
		}
		defer a.lease.Release(ctx)
		if a.lease.Fence() != fence {
			t.Errorf("lease fence %d, want the lost grant's %d (the same hold)", a.lease.Fence(), fence)
		}
	})
}

// ownerOf returns the owner of key's lock, or "" if it is free.
func ownerOf(t *testing.T, ctx context.Context, admin *redis.Client, key string) string {
	t.Helper()
	v, err := admin.Get(ctx, "dlock:{"+key+"}").Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.SplitN(v, "\n", 4)
	return parts[len(parts)-1]
}

// TestHandoffHolderNotRequeued: a waiter's attempt that finds the key
// already granted to its token (the grant's message still on its way)
// returns it as acquired, and must not queue the waiter again: the
// release of that lease would grant the key straight back to the releasing
// token, still subscribed for a moment, and keep it from everyone else
// (for a TTL, if the grant's message then reaches a notifier that takes
// it for the lease).
func TestHandoffHolderNotRequeued(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	waiter := newHandoffDriver(t, redis.NewClient(s.Options()))
	ctx := testCtx(t)
	key := uniqueKey("handoff/requeue/")
	const ttl = 30 * time.Second
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: ttl}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	turns, cancel, err := waiter.SubscribeHandoff(ctx, key, "w")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	queue(t, ctx, waiter, key, "w", 1, ttl)
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	// The waiter's next attempt, sent before the grant's message came.
	res, err := waiter.Acquire(ctx, driver.Request{Key: key, Token: "w", TTL: ttl, Owner: "owner of w", Wait: 10 * time.Second, Attempt: 2})
	if err != nil || !res.Acquired {
		t.Fatalf("the waiter's attempt after the grant = %+v, %v; want acquired", res, err)
	}
	if turn := turnWithin(t, turns, 5*time.Second, "the granted waiter"); !turn.Granted {
		t.Fatalf("Turn = %+v, want the grant", turn)
	}
	if n := admin.ZCard(ctx, "dlock:{"+key+"}:queue").Val(); n != 0 {
		t.Errorf("the holder's attempt queued it again: %d waiters queued", n)
	}
	if err := waiter.Release(ctx, key, "w"); err != nil {
		t.Fatal(err)
	}
	if owner := ownerOf(t, ctx, admin, key); owner != "" {
		t.Errorf("after the waiter released its lease the key is held by %q: granted back to the token that released it", owner)
	}
	// Its release wakes the key's subscribers, the waiter among them
	// (still subscribed): a plain wake-up, not a grant.
	if turn := turnWithin(t, turns, 5*time.Second, "a subscriber of the released key"); turn.Granted {
		t.Errorf("the waiter got %+v after it released its lease", turn)
	}
}

// TestHandoffCancelAtGrant: a waiter gives up at about the moment the
// release grants it the key, the two racing in every order the timing
// allows. Whatever wins, the waiter either returns the lease or, when
// Acquire returns, leaves the key free: never held by a token nobody
// uses, not even for moments.
func TestHandoffCancelAtGrant(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	waiter := newLocker(t, s.Options(), nil)
	ctx := testCtx(t)
	const ttl = 30 * time.Second
	opts := &dlock.Options{TTL: ttl, Owner: "cancelling waiter", Retry: noPolling}
	leases := 0
	for i := range 40 {
		key := uniqueKey("handoff/cancel-at-grant/")
		if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: ttl}); err != nil || !res.Acquired {
			t.Fatalf("holder: %+v %v", res, err)
		}
		wctx, giveUp := context.WithCancel(ctx)
		got := goAcquire(wctx, waiter, key, opts)
		waitAttemptQueued(t, admin, key)
		// Spread the cancel around the release: before, at, after.
		delay := time.Duration(i%8-4) * 100 * time.Microsecond
		go func() {
			time.Sleep(delay)
			giveUp()
		}()
		time.Sleep(-delay)
		if err := holder.Release(ctx, key, "holder"); err != nil {
			t.Fatal(err)
		}
		a := <-got
		giveUp()
		if a.err == nil {
			leases++
			if err := a.lease.Release(ctx); err != nil {
				t.Fatalf("round %d: release of the lease: %v", i, err)
			}
		}
		if o := ownerOf(t, ctx, admin, key); o != "" {
			t.Fatalf("round %d (lease: %v): the key is held by %q after the waiter returned (and released its lease, if any)", i, a.err == nil, o)
		}
	}
	t.Logf("%d of 40 rounds ended with the lease", leases)
}

// TestHandoffLateGrantNeverUsed: a waiter with a short TTL, queued with an
// attempt long before the release, is granted the key on that attempt
// after the lease it would count from the attempt's sending has run out.
// It must not use the grant (the server's expiry, counted from the
// release, is later, but the waiter's deadline has passed): it passes the
// key on and takes it with a new attempt, its lease within the server's
// expiry.
func TestHandoffLateGrantNeverUsed(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	waiter := newLocker(t, s.Options(), nil)
	ctx := testCtx(t)
	const ttl = 200 * time.Millisecond
	key := uniqueKey("handoff/late-ttl/")
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	got := goAcquire(ctx, waiter, key, &dlock.Options{TTL: ttl, Owner: "short waiter", Retry: noPolling})
	waitAttemptQueued(t, admin, key)
	queuedAt := time.Now()
	// No event: the queued attempt must be older than its TTL.
	time.Sleep(3 * ttl)
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.err != nil {
		t.Fatalf("Acquire: %v", a.err)
	}
	defer a.lease.Release(ctx)
	now := time.Now()
	if !a.lease.ValidUntil().After(queuedAt.Add(ttl)) {
		t.Errorf("lease valid until %v, counted from the attempt queued %v before the release: the late grant was used", a.lease.ValidUntil().Sub(now), now.Sub(queuedAt))
	}
	if pttl := admin.PTTL(ctx, "dlock:{"+key+"}").Val(); now.Add(pttl).Before(a.lease.ValidUntil()) {
		t.Errorf("the server's expiry (in %v) is before the lease's deadline (in %v)", pttl, a.lease.ValidUntil().Sub(now))
	}
}

// TestHandoffMixedFencing: waiters with and without fences on one key. A
// fences-off holder's release hands the key to the fenced waiter queued,
// with a fence above every fence the key had before (the holder's is 0);
// a fences-off waiter queued after it is served next, by its release.
func TestHandoffMixedFencing(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	noFence := &dlock.Options{DisableFencing: true, Retry: noPolling, TTL: 30 * time.Second}
	fenced := &dlock.Options{Retry: noPolling, TTL: 30 * time.Second}
	first := newLocker(t, s.Options(), nil)
	holder := newLocker(t, s.Options(), nil)
	a := newLocker(t, s.Options(), nil)
	b := newLocker(t, s.Options(), nil)
	ctx := testCtx(t)
	key := uniqueKey("handoff/mixed/")
	earlier, err := first.TryAcquire(ctx, key, fenced)
	if err != nil {
		t.Fatal(err)
	}
	if err := earlier.Release(ctx); err != nil {
		t.Fatal(err)
	}
	held, err := holder.TryAcquire(ctx, key, noFence)
	if err != nil {
		t.Fatal(err)
	}
	gotA := goAcquire(ctx, a, key, fenced)
	waitAttemptQueued(t, admin, key)
	gotB := goAcquire(ctx, b, key, noFence)
	// b subscribes, on the same channel as a: wait for a second listener.
	for {
		m, err := admin.PubSubNumSub(ctx, "dlock:{"+key+"}:released").Result()
		if err != nil {
			t.Fatal(err)
		}
		if m["dlock:{"+key+"}:released"] >= 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := held.Release(ctx); err != nil {
		t.Fatal(err)
	}
	la := <-gotA
	if la.err != nil {
		t.Fatalf("fenced waiter: %v", la.err)
	}
	if la.lease.Fence() <= earlier.Fence() {
		t.Errorf("handed-off fence %d is not above the key's earlier fence %d", la.lease.Fence(), earlier.Fence())
	}
	select {
	case lb := <-gotB:
		t.Fatalf("the fences-off waiter got the key (%v) while the fenced one holds it", lb.err)
	default:
	}
	releasedA := time.Now()
	if err := la.lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	lb := <-gotB
	if lb.err != nil {
		t.Fatalf("fences-off waiter: %v", lb.err)
	}
	defer lb.lease.Release(ctx)
	if d := lb.at.Sub(releasedA); d > 5*time.Second {
		t.Errorf("the fences-off waiter took the key %v after the release: not woken by it", d)
	}
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
	waiter := mustNew(t, wc, &redisdriver.Options{Lock: &dlock.Options{TTL: time.Minute, Retry: noPolling}})
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

// TestHandoffFailedSubscribeKeepsToken: a SubscribeHandoff that fails
// (here NOPERM on the channels) leaves the caller with its token, which it
// goes on using for its attempts (dlock then waits by backoff and expiry
// hints): the driver must not release that token behind its back as the
// token of a waiter that left, which would free a key its next attempt
// takes.
func TestHandoffFailedSubscribeKeepsToken(t *testing.T) {
	s := startNoChannelACL(t)
	admin := s.Client(t)
	o := s.Options()
	o.Username, o.Password = noChannelUser.Username, noChannelUser.Password
	d := newHandoffDriver(t, redis.NewClient(o))
	ctx := testCtx(t)
	const key = "handoff/failed-subscribe"
	if res, err := d.Acquire(ctx, driver.Request{Key: key, Token: "w", TTL: time.Minute, Owner: "w"}); err != nil || !res.Acquired {
		t.Fatalf("Acquire: %+v %v", res, err)
	}
	if _, _, err := d.SubscribeHandoff(ctx, key, "w"); err == nil {
		t.Fatal("SubscribeHandoff without channel permission succeeded")
	}
	// A release by the driver would run in the background at once,
	// with no event outside it: give it ample time.
	time.Sleep(200 * time.Millisecond)
	if owner := ownerOf(t, ctx, admin, key); owner != "w" {
		t.Errorf("after a failed SubscribeHandoff the key is held by %q, want still by the token that subscribed", owner)
	}
}

// TestHandoffLeaseKeptAfterFailedResubscribe: a waiter's live handoff
// subscription is cut (its user loses the channel permission, which
// disconnects it) and refused when subscribed again, so the driver drops
// it and wakes the waiter, which then takes the key with its own attempt
// at the holder's expiry. That lease is the caller's: the cancel of the
// dropped subscription must not release the token as that of a waiter
// whose grant was lost with its connection.
func TestHandoffLeaseKeptAfterFailedResubscribe(t *testing.T) {
	s := redistest.StartACL(t)
	admin := s.Client(t)
	ctx := testCtx(t)
	const user = "handoffperm"
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "on", ">"+user+"-pw", "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	o := s.Options()
	o.Username, o.Password = user, user+"-pw"
	waiter := newLocker(t, o, nil)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	const key = "handoff/resubscribe-refused"
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 2 * time.Second}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	got := goAcquire(ctx, waiter, key, &dlock.Options{TTL: time.Minute, Owner: "waiter", Retry: noPolling})
	waitAttemptQueued(t, admin, key)
	// Redis disconnects the user's subscribed clients; the notifier's
	// SUBSCRIBE on a new connection is refused with NOPERM.
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "resetchannels").Err(); err != nil {
		t.Fatal(err)
	}
	a := <-got // at the holder's expiry
	if a.err != nil {
		t.Fatalf("waiter: %v", a.err)
	}
	defer a.lease.Release(ctx)
	// A release by the driver would run in the background at once,
	// with no event outside it: give it ample time.
	time.Sleep(300 * time.Millisecond)
	if owner := ownerOf(t, ctx, admin, key); owner != "waiter" {
		t.Errorf("the waiter holds a lease but the key is held by %q: its token was released behind it", owner)
	}
	if err := a.lease.Err(); err != nil {
		t.Errorf("lease: %v", err)
	}
}

// TestHandoffNoFenceLeaseKeptAfterReconnect: a fences-off waiter (its
// attempts bypass the acquire script) subscribed for handoff; its pub/sub
// connection is cut and replaced while it waits, and its own attempt
// then takes the key at the holder's expiry. That lease is the caller's:
// the end of the subscription must not release the token as that of a
// waiter whose grant was lost with its connection.
func TestHandoffNoFenceLeaseKeptAfterReconnect(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	admin := s.Client(t)
	ctx := testCtx(t)
	waiter := newLocker(t, s.Options(), nil)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	const key = "handoff/nofence-reconnect"
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 2 * time.Second, NoFence: true}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	got := goAcquire(ctx, waiter, key, &dlock.Options{TTL: time.Minute, Owner: "waiter", Retry: noPolling, DisableFencing: true})
	waitSubscribed(t, admin, key)
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	a := <-got // at the holder's expiry
	if a.err != nil {
		t.Fatalf("waiter: %v", a.err)
	}
	defer a.lease.Release(ctx)
	// A release by the driver would run in the background at once,
	// with no event outside it: give it ample time.
	time.Sleep(300 * time.Millisecond)
	if owner := ownerOf(t, ctx, admin, key); owner != "waiter" {
		t.Errorf("the waiter holds a lease but the key is held by %q: its token was released behind it", owner)
	}
}

// TestHandoffFencesOffWaiterQueued: a waiter with fencing off is queued
// like any other (its busy attempt runs the fenced script), so that a
// release hands it the key in turn instead of waking every subscriber;
// its lease still has fence 0.
func TestHandoffFencesOffWaiterQueued(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	noFence := &dlock.Options{DisableFencing: true, Retry: noPolling, TTL: 30 * time.Second}
	holder := newLocker(t, s.Options(), nil)
	waiter := newLocker(t, s.Options(), nil)
	ctx := testCtx(t)
	key := uniqueKey("handoff/fences-off/")
	held, err := holder.TryAcquire(ctx, key, noFence)
	if err != nil {
		t.Fatal(err)
	}
	got := goAcquire(ctx, waiter, key, noFence)
	waitAttemptQueued(t, admin, key)
	if err := held.Release(ctx); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.err != nil {
		t.Fatalf("fences-off waiter: %v", a.err)
	}
	defer a.lease.Release(ctx)
	if f := a.lease.Fence(); f != 0 {
		t.Errorf("fences-off lease has fence %d, want 0", f)
	}
	if _, _, _, owner := lockValue(t, ctx, admin, key); owner != a.lease.Owner() {
		t.Errorf("the key is held by %q, want the waiter %q", owner, a.lease.Owner())
	}
}
