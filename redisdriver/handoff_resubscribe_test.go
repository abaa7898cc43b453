package redisdriver_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// busyObserver signals each busy attempt.
type busyObserver chan struct{}

func (b busyObserver) Observe(_ context.Context, e dlock.Event) {
	if e.Kind == dlock.EventBusy {
		select {
		case b <- struct{}{}:
		default:
		}
	}
}

// TestWaiterSubscribesAgainAfterBlip: the waiter's SUBSCRIBE fails in a
// short pub/sub outage (its commands still work). The waiter must
// subscribe again once pub/sub is back, and be handed the key by the
// holder's release at once, not sleep until its backoff (20 s here) or the
// holder's TTL as a poller for the rest of its Acquire.
func TestWaiterSubscribesAgainAfterBlip(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	px := redistest.NewProxy(t, s.Addr())
	busy := make(busyObserver, 1)
	waiter := lossyWaiterWith(t, s, px, &dlock.Options{Observer: busy.Observe})
	ctx := testCtx(t)
	key := uniqueKey("handoff/blip/")
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	px.Disconnect()
	got := goAcquire(ctx, waiter, key, &dlock.LeaseOptions{Retry: noPolling})
	<-busy                             // the first attempt; the SUBSCRIBE that follows fails
	time.Sleep(300 * time.Millisecond) // the outage
	px.Heal()
	deadline := time.Now().Add(5 * time.Second)
	for !attemptStored(ctx, admin, key) {
		if time.Now().After(deadline) {
			t.Fatal("5s after pub/sub came back, the waiter is still not subscribed and queued for a handoff")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		if a.err != nil {
			t.Fatal(a.err)
		}
		a.lease.Release(ctx)
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter was not handed the key by the release")
	}
}

// attemptStored reports whether key's queue holds an attempt to grant
// (see waitAttemptQueued).
func attemptStored(ctx context.Context, admin *redis.Client, key string) bool {
	return slices.ContainsFunc(admin.HVals(ctx, "dlock:{"+key+"}:attempts").Val(), func(v string) bool { return strings.Contains(v, "\n") })
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
	got := goAcquire(ctx, waiter, key, &dlock.LeaseOptions{TTL: time.Minute, Owner: "waiter", Retry: noPolling})
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
	got := goAcquire(ctx, waiter, key, &dlock.LeaseOptions{TTL: time.Minute, Owner: "waiter", Retry: noPolling, DisableFencing: true})
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
