package redisdriver_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestHandoffGiveUpLeavesNothingHeld: a waiter gives up (its context
// ends, or its Locker is closed) just after a release granted it the key,
// the grant's message still on its way (its pub/sub connection is slow).
// When Acquire (or Close) returns, no token of the waiter holds the key:
// the give-up is synchronous, not left to a background release that may
// come later, or never (Close ends the driver).
func TestHandoffGiveUpLeavesNothingHeld(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	const ttl = 30 * time.Second
	const owner = "giving-up waiter"
	opts := &dlock.LeaseOptions{TTL: ttl, Owner: owner, Retry: noPolling}
	for _, how := range []string{"context", "close"} {
		t.Run(how, func(t *testing.T) {
			px := redistest.NewProxy(t, s.Addr())
			waiter := lossyWaiter(t, s, px)
			ctx := testCtx(t)
			key := uniqueKey("handoff/give-up/" + how + "/")
			if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: ttl}); err != nil || !res.Acquired {
				t.Fatalf("holder: %+v %v", res, err)
			}
			wctx, giveUp := context.WithCancel(ctx)
			defer giveUp()
			got := goAcquire(wctx, waiter, key, opts)
			waitAttemptQueued(t, admin, key)
			px.Latency(200 * time.Millisecond)
			if err := holder.Release(ctx, key, "holder"); err != nil {
				t.Fatal(err)
			}
			if o := ownerOf(t, ctx, admin, key); o != owner {
				t.Fatalf("the release granted the key to %q, want the waiter", o)
			}
			switch how {
			case "context":
				giveUp()
			case "close":
				if err := waiter.Close(); err != nil {
					t.Fatal(err)
				}
			}
			a := <-got
			if a.err == nil {
				a.lease.Release(ctx)
				t.Fatal("Acquire returned the lease: the grant's message cannot have come before the give-up through 200ms of latency")
			}
			if how == "context" && !errors.Is(a.err, context.Canceled) {
				t.Fatalf("Acquire = %v, want an error wrapping context.Canceled", a.err)
			}
			if o := ownerOf(t, ctx, admin, key); o == owner {
				t.Fatalf("Acquire returned %v, and the waiter's token still holds the key (PTTL %v)", a.err, admin.PTTL(ctx, "dlock:{"+key+"}").Val())
			}
		})
	}
}

// TestHandoffGiveUpInPartition: a waiter gives up while its pub/sub
// connection is partitioned (its commands still reach the server): its
// UNSUBSCRIBE is never confirmed, and the server still counts it as
// listening. Acquire returns within about the read timeout (it cannot
// learn more), and a release that comes after must not hand the key to
// the waiter that left: the waiter's own release, made as it gave up,
// took it off the queue.
func TestHandoffGiveUpInPartition(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	const owner = "partitioned waiter"
	px := redistest.NewProxy(t, s.Addr())
	waiter := lossyWaiter(t, s, px)
	ctx := testCtx(t)
	key := uniqueKey("handoff/give-up-partition/")
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	wctx, giveUp := context.WithCancel(ctx)
	defer giveUp()
	got := goAcquire(wctx, waiter, key, &dlock.LeaseOptions{TTL: 30 * time.Second, Owner: owner, Retry: noPolling})
	waitAttemptQueued(t, admin, key)
	// A real partition hides the connection's end from the server too,
	// which then counts the waiter as listening for as long as TCP keeps
	// the connection: a subscriber of the waiter's channel stands in for
	// it (the proxy passes the close on).
	tags := admin.ZRange(ctx, "dlock:{"+key+"}:queue", 0, -1).Val()
	if len(tags) != 1 {
		t.Fatalf("queue = %v, want the waiter alone", tags)
	}
	ghost := admin.Subscribe(ctx, "dlock:{"+key+"}:w:"+tags[0])
	defer ghost.Close()
	if _, err := ghost.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	px.Partition()
	start := time.Now()
	giveUp()
	a := <-got
	if a.err == nil {
		t.Fatal("Acquire returned a lease, though the key is held")
	}
	if d := time.Since(start); d > 2*s.Options().ReadTimeout+time.Second {
		t.Errorf("Acquire returned %v after its context ended", d)
	}
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	if o := ownerOf(t, ctx, admin, key); o == owner {
		t.Fatalf("after the waiter gave up, the holder's release handed it the key (PTTL %v)", admin.PTTL(ctx, "dlock:{"+key+"}").Val())
	}
	px.Heal()
}

// TestHandoffGiveUpOutcomeUnknown: a waiter gives up, cut off from the
// server, after a release granted it the key (the grant's message lost
// with its connection). It cannot learn whether it holds the key, nor
// release it: its Acquire must say so, not report a plain give-up as if
// it held nothing.
func TestHandoffGiveUpOutcomeUnknown(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	px := redistest.NewProxy(t, s.Addr())
	o := s.Options()
	o.Addr = px.Addr()
	const owner = "partitioned waiter"
	waiter := newLocker(t, o, &dlock.Options{ReleaseTimeout: 300 * time.Millisecond})
	ctx := testCtx(t)
	key := uniqueKey("handoff/give-up-unknown/")
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	wctx, giveUp := context.WithCancel(ctx)
	defer giveUp()
	got := goAcquire(wctx, waiter, key, &dlock.LeaseOptions{TTL: 30 * time.Second, Owner: owner, Retry: noPolling})
	waitAttemptQueued(t, admin, key)
	px.Latency(200 * time.Millisecond)
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	px.Disconnect() // the grant's message is lost on its way; no command gets through
	giveUp()
	a := <-got
	if a.err == nil {
		t.Fatal("Acquire returned a lease through a partition")
	}
	if o := ownerOf(t, ctx, admin, key); o != owner {
		t.Fatalf("the key is held by %q: this test is about a grant the waiter could not release", o)
	}
	if !strings.Contains(a.err.Error(), "may stay held") {
		t.Errorf("Acquire = %v; the waiter's token still holds the key, and the error does not say the outcome is unknown", a.err)
	}
}
