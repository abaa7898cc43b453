package redisdriver_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestHandoffReleaseNeverGrantsBackToItself: a waiter that takes the key
// without the queue's help (a bare SET NX with fences off, or an attempt
// that does not queue) keeps the queue entry of its earlier attempt. Its
// release must not hand the key to that entry, its own token, still
// subscribed: the key would stay held by a lease already released.
func TestHandoffReleaseNeverGrantsBackToItself(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	ctx := testCtx(t)
	for _, noFence := range []bool{true, false} {
		holder := newHandoffDriver(t, redis.NewClient(s.Options()))
		w := newHandoffDriver(t, redis.NewClient(s.Options()))
		key := uniqueKey("handoff/self/")
		if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 100 * time.Millisecond}); err != nil || !res.Acquired {
			t.Fatalf("holder: %+v %v", res, err)
		}
		_, cancel, err := w.SubscribeHandoff(ctx, key, "w")
		if err != nil {
			t.Fatal(err)
		}
		queue(t, ctx, w, key, "w", 1, 30*time.Second)
		poll(t, "the holder's key to expire", func() error {
			if admin.Exists(ctx, "dlock:{"+key+"}").Val() != 0 {
				return errNotYet
			}
			return nil
		})
		// The last attempt of a waiter giving up: no Wait, so not queued
		// (and with fences off, a bare SET NX).
		res, err := w.AcquireQueued(ctx, driver.Request{Key: key, Token: "w", TTL: 30 * time.Second, NoFence: noFence}, driver.Queued{Attempt: 2})
		if err != nil || !res.Acquired {
			t.Fatalf("the waiter's attempt on the free key = %+v, %v", res, err)
		}
		if err := w.Release(ctx, key, "w"); err != nil {
			t.Fatal(err)
		}
		if v, err := admin.Get(ctx, "dlock:{"+key+"}").Result(); err != redis.Nil {
			t.Errorf("fences off %v: after its release, the key holds %q (%v): the release granted it back to its own token", noFence, v, err)
		}
		cancel()
	}
}

// TestHandoffReleaseFreesKeyThroughProxy: waiters with fences off take
// turns on one key through TCP proxies that add latency (as HAProxy,
// Envoy or a cloud load balancer in front of Redis do), so that their
// attempts, grants and releases interleave in every order. When a
// Release returns, the key is never held by the token just released.
func TestHandoffReleaseFreesKeyThroughProxy(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	ctx := testCtx(t)
	key := uniqueKey("handoff/self-proxy/")
	opts := &dlock.LeaseOptions{DisableFencing: true, TTL: 10 * time.Second, Retry: noPolling}
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 2 {
		px := redistest.NewProxy(t, s.Addr())
		px.Latency(time.Millisecond)
		o := s.Options()
		o.Addr = px.Addr()
		l := newLocker(t, o, nil)
		for range 2 {
			wg.Go(func() {
				for range 60 {
					lease, err := l.Acquire(ctx, key, opts)
					if err != nil {
						t.Error(err)
						return
					}
					if err := lease.Release(ctx); err != nil {
						t.Error(err)
						return
					}
					if v, err := admin.Get(ctx, "dlock:{"+key+"}").Result(); err == nil && strings.HasPrefix(v, lease.Token()+"\n") {
						bad.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Errorf("%d of 240 releases left the key held by the token released", n)
	}
	if v, err := admin.Get(ctx, "dlock:{"+key+"}").Result(); err != redis.Nil {
		t.Errorf("after every lease was released, the key holds %q (%v)", v, err)
	}
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
	res, err := waiter.AcquireQueued(ctx, driver.Request{Key: key, Token: "w", TTL: ttl, Owner: "owner of w"}, driver.Queued{Wait: 10 * time.Second, Attempt: 2})
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
