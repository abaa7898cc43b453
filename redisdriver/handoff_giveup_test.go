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
	opts := &dlock.Options{TTL: ttl, Owner: owner, Retry: noPolling}
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
