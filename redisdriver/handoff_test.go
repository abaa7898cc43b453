package redisdriver_test

import (
	"context"
	"errors"
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

// noPolling makes a waiter depend on the release notification or the
// holder's reported expiry: its own backoff alone would wait 10s.
var noPolling = dlock.ExponentialBackoff(20*time.Second, 20*time.Second)

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

func goAcquire(ctx context.Context, l *dlock.Locker, key string, o *dlock.LeaseOptions) <-chan acquired {
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
		lease, err := holder.TryAcquire(ctx, key, &dlock.LeaseOptions{TTL: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		got := goAcquire(ctx, waiter, key, &dlock.LeaseOptions{Retry: noPolling})
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
		got := goAcquire(ctx, waiter, key, &dlock.LeaseOptions{Retry: noPolling})
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

// countingDriver counts the acquire attempts of one waiter, queued or not.
type countingDriver struct {
	driver.Locker
	attempts atomic.Int32
}

func (c *countingDriver) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	c.attempts.Add(1)
	return c.Locker.Acquire(ctx, req)
}

func (c *countingDriver) AcquireQueued(ctx context.Context, req driver.Request, q driver.Queued) (driver.Result, error) {
	c.attempts.Add(1)
	return c.Locker.(driver.Handoff).AcquireQueued(ctx, req, q)
}

func (c *countingDriver) Subscribe(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	return c.Locker.(driver.Notifier).Subscribe(ctx, key)
}

func (c *countingDriver) SubscribeHandoff(ctx context.Context, key, token string) (<-chan driver.Turn, func(), error) {
	return c.Locker.(driver.Handoff).SubscribeHandoff(ctx, key, token)
}

// TestHandoffOneAtATime: waiters queue in the order they came, and each
// release wakes the first of them alone: the others make no attempt,
// where waking every subscriber would make them all try at once.
func TestHandoffOneAtATime(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	ctx := testCtx(t)
	const key = "handoff/fifo"
	holder := newLocker(t, s.Options(), nil)
	lease, err := holder.TryAcquire(ctx, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	var waiters [n]*countingDriver
	var got [n]<-chan acquired
	for i := range n {
		c := redis.NewClient(s.Options())
		t.Cleanup(func() { c.Close() })
		waiters[i] = &countingDriver{Locker: redisdriver.NewDriver(c, nil)}
		l := dlock.New(waiters[i], &dlock.Options{LeaseOptions: dlock.LeaseOptions{Retry: noPolling}})
		t.Cleanup(func() { l.Close() })
		got[i] = goAcquire(ctx, l, key, nil)
		// Queued by its first attempt, then subscribed and tried again
		// once; it now sleeps until it is woken.
		for waiters[i].attempts.Load() < 2 || admin.ZCard(ctx, "dlock:{"+key+"}:queue").Val() != int64(i+1) {
			time.Sleep(time.Millisecond)
		}
	}
	release := lease.Release
	for i := range n {
		var before [n]int32
		for j := range n {
			before[j] = waiters[j].attempts.Load()
		}
		if err := release(ctx); err != nil {
			t.Fatal(err)
		}
		var r acquired
		select {
		case r = <-got[i]:
		case <-time.After(5 * time.Second): // it would sleep 15s if not woken
			t.Fatalf("waiter %d, first in the queue, not granted 5s after a release (queue %v, channels %v, attempts %d %d %d)", i,
				admin.ZRange(ctx, "dlock:{"+key+"}:queue", 0, -1).Val(), admin.PubSubChannels(ctx, "*").Val(),
				waiters[0].attempts.Load(), waiters[1].attempts.Load(), waiters[2].attempts.Load())
		}
		if r.err != nil {
			t.Fatalf("waiter %d: %v", i, r.err)
		}
		time.Sleep(20 * time.Millisecond) // room for attempts that should not happen
		for j := i + 1; j < n; j++ {
			if d := waiters[j].attempts.Load() - before[j]; d != 0 {
				t.Errorf("release %d: waiter %d, not first in the queue, made %d attempts", i, j, d)
			}
		}
		release = r.lease.Release
	}
	if err := release(ctx); err != nil {
		t.Fatal(err)
	}
	if n := admin.Exists(ctx, "dlock:{"+key+"}:queue").Val(); n != 0 {
		t.Errorf("the queue outlives its waiters")
	}
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
