package redisdriver_test

import (
	"context"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestHandoffSubscribeIntoPartition: a waiter whose pub/sub connection is
// partitioned (its commands still reach the server) before it subscribes
// never has its SUBSCRIBE confirmed. Its Acquire must not wait for that
// confirmation for as long as its context lasts: once the key is free, an
// attempt of its own (its backoff, 100 ms here) takes it, within about the
// read timeout after which the subscription counts as failed.
func TestHandoffSubscribeIntoPartition(t *testing.T) {
	s := redistest.Shared(t)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	px := redistest.NewProxy(t, s.Addr())
	waiter := lossyWaiter(t, s, px)
	ctx := testCtx(t)
	key := uniqueKey("handoff/subscribe-partition/")
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	px.Partition()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	got := goAcquire(wctx, waiter, key, &dlock.LeaseOptions{TTL: 30 * time.Second, Retry: dlock.ExponentialBackoff(100*time.Millisecond, 100*time.Millisecond)})
	time.Sleep(300 * time.Millisecond)
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	a := <-got
	if a.err != nil {
		t.Fatalf("Acquire = %v, want the key, free since %v", a.err, time.Since(released))
	}
	defer a.lease.Release(ctx)
	t.Logf("acquired %v after the release", a.at.Sub(released))
	// Two read timeouts (the SUBSCRIBE's, then the new connection's
	// handshake), and one more for a loaded machine.
	if d := a.at.Sub(released); d > 3*s.Options().ReadTimeout+time.Second {
		t.Errorf("Acquire took the free key %v after its release: it waited for a subscription that a partition keeps unconfirmed", d)
	}
}

// TestHandoffGrantToPartitionedWaiter: the server still counts the
// waiter's partitioned pub/sub connection as listening, so a release
// grants it the key, and the grant's message never arrives. The key is
// then held by a token nobody knows holds it, for no longer than the
// waiter's next attempt (its backoff, 300 ms here), which finds the key
// its own and returns the lease.
func TestHandoffGrantToPartitionedWaiter(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	px := redistest.NewProxy(t, s.Addr())
	waiter := lossyWaiter(t, s, px)
	ctx := testCtx(t)
	const owner = "partitioned waiter"
	key := uniqueKey("handoff/grant-partition/")
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	const backoff = 300 * time.Millisecond
	got := goAcquire(ctx, waiter, key, &dlock.LeaseOptions{TTL: 30 * time.Second, Owner: owner, Retry: dlock.ExponentialBackoff(backoff, backoff)})
	waitAttemptQueued(t, admin, key)
	px.Partition()
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	if o := ownerOf(t, ctx, admin, key); o != owner {
		t.Fatalf("the release granted the key to %q, want the partitioned waiter (still counted as listening)", o)
	}
	a := <-got
	if a.err != nil {
		t.Fatalf("Acquire = %v", a.err)
	}
	defer a.lease.Release(ctx)
	t.Logf("the waiter had the key %v after the release", a.at.Sub(released))
	if d := a.at.Sub(released); d > 2*backoff+500*time.Millisecond {
		t.Errorf("the key was held by a grant nobody knew of for %v, beyond the waiter's backoff %v", d, backoff)
	}
	if err := a.lease.Err(); err != nil {
		t.Fatalf("lease: %v", err)
	}
}
