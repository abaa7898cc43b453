package redisdriver_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// lossyWaiter is a Locker whose commands go straight to the server and
// whose pub/sub connection goes through px, so that its notifications can
// be lost while its commands still work.
func lossyWaiter(t *testing.T, s *redistest.Server, px *redistest.Proxy) *dlock.Locker {
	t.Helper()
	return lossyWaiterWith(t, s, px, nil)
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
	opts := &dlock.LeaseOptions{TTL: ttl, Owner: "lossy waiter", Retry: noPolling}

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
	opts := &dlock.LeaseOptions{TTL: ttl, Owner: "cancelling waiter", Retry: noPolling}
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
	got := goAcquire(ctx, waiter, key, &dlock.LeaseOptions{TTL: ttl, Owner: "short waiter", Retry: noPolling})
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
