package redisdriver_test

import (
	"context"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// noPolling makes a waiter depend on the release notification or the
// holder's reported expiry: its own backoff alone would wait 10s.
var noPolling = dlock.LinearBackoff(20 * time.Second)

// waitSubscribed returns once someone listens for releases of key: there is
// no event for that outside the driver, so it polls PUBSUB NUMSUB.
func waitSubscribed(tb testing.TB, admin *redis.Client, key string) {
	tb.Helper()
	ctx := testCtx(tb)
	ch := "dlock:{" + key + "}:released"
	for {
		m, err := admin.PubSubNumSub(ctx, ch).Result()
		if err != nil {
			tb.Fatal(err)
		}
		if m[ch] > 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

type acquired struct {
	lease *dlock.Lease
	err   error
	at    time.Time
}

func goAcquire(ctx context.Context, l *dlock.Locker, key string, o *dlock.Options) <-chan acquired {
	done := make(chan acquired, 1)
	go func() {
		lease, err := l.Acquire(ctx, key, o)
		done <- acquired{lease, err, time.Now()}
	}()
	return done
}

// TestHandoffOnRelease: a waiter is granted the key within a few round
// trips of the release, woken by pub/sub.
func TestHandoffOnRelease(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	holder := newLocker(t, s.Options(), nil)
	waiter := newLocker(t, s.Options(), nil)
	ctx := testCtx(t)
	const key = "handoff/release"
	for i := range 5 {
		lease, err := holder.TryAcquire(ctx, key, &dlock.Options{TTL: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		got := goAcquire(ctx, waiter, key, &dlock.Options{Retry: noPolling})
		waitSubscribed(t, admin, key)
		released := time.Now()
		if err := lease.Release(ctx); err != nil {
			t.Fatal(err)
		}
		a := <-got
		if a.err != nil {
			t.Fatal(a.err)
		}
		d := a.at.Sub(released)
		t.Logf("round %d: granted %v after the release", i, d)
		// A few round trips are well under a millisecond each here; the
		// bound allows for the race detector on a loaded machine.
		if d > 500*time.Millisecond {
			t.Errorf("waiter granted %v after the release: not woken by it", d)
		}
		a.lease.Release(ctx)
	}
}

// TestHandoffOnExpiry: the holder vanishes without releasing; the waiter
// is granted the key right after its expiry, which the failed attempt
// reported.
func TestHandoffOnExpiry(t *testing.T) {
	s := redistest.Shared(t)
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	waiter := newLocker(t, s.Options(), nil)
	ctx := testCtx(t)
	const key, ttl = "handoff/expiry", 300 * time.Millisecond
	for i := range 3 {
		// The vanished holder: acquired once, never refreshed or released.
		sent := time.Now()
		res, err := d.Acquire(ctx, driver.Request{Key: key, Token: "gone", TTL: ttl, Owner: "vanished"})
		if err != nil || !res.Acquired {
			t.Fatalf("holder acquire: %v %+v", err, res)
		}
		got := goAcquire(ctx, waiter, key, &dlock.Options{Retry: noPolling})
		a := <-got
		if a.err != nil {
			t.Fatal(a.err)
		}
		late := a.at.Sub(sent.Add(ttl))
		t.Logf("round %d: granted %v after the holder's expiry", i, late)
		if late > 250*time.Millisecond {
			t.Errorf("waiter granted %v after the holder's expiry", late)
		}
		a.lease.Release(ctx)
	}
}
