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
	waiter := lossyWaiter(t, s, px)
	ctx := testCtx(t)
	key := uniqueKey("handoff/blip/")
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	busy := make(busyObserver, 1)
	px.Disconnect()
	got := goAcquire(ctx, waiter, key, &dlock.Options{Retry: noPolling, Observer: busy})
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
