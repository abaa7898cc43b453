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
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// newLocker returns a Locker over a new client of s with options o.
func newLocker(t *testing.T, o *redis.Options, lock *dlock.Options) *dlock.Locker {
	t.Helper()
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	l := mustNew(t, c, &redisdriver.Options{Lock: lock})
	t.Cleanup(func() { l.Close() })
	return l
}

// TestFaultPartitionLosesLeaseBeforeExpiry: Redis is cut off from the
// holder while it holds a lease. The lease must end (Done closes) while
// the server still holds the key, so nobody else can have it yet.
func TestFaultPartitionLosesLeaseBeforeExpiry(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	px := redistest.NewProxy(t, s.Addr())
	o := s.Options()
	o.Addr = px.Addr()
	const ttl = time.Second
	// The drift allowance is the margin between the local deadline and
	// the server's expiry: large enough that checking the key after the
	// loss is not a race on a loaded machine.
	l := newLocker(t, o, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: ttl, Drift: ttl / 4}})
	ctx := testCtx(t)

	sent := time.Now()
	lease, err := l.TryAcquire(ctx, "fault/partition", nil)
	if err != nil {
		t.Fatal(err)
	}
	px.Partition()
	select {
	case <-lease.Context().Done():
	case <-time.After(5 * ttl):
		t.Fatal("lease still valid 5 TTLs after the partition")
	}
	lost := time.Now()
	pttl, err := admin.PTTL(ctx, "dlock:{fault/partition}").Result()
	if err != nil {
		t.Fatal(err)
	}
	if pttl <= 0 {
		t.Errorf("lease ended only after the server freed the key (PTTL %v): someone else could have held it meanwhile", pttl)
	}
	if lost.After(sent.Add(ttl)) {
		t.Errorf("lease ended %v after the acquire was sent, later than the TTL %v", lost.Sub(sent), ttl)
	}
	if !errors.Is(lease.Err(), dlock.ErrLeaseLost) {
		t.Errorf("lease error %v does not wrap ErrLeaseLost", lease.Err())
	}
	t.Logf("lease lost %v after acquire, key had %v left on the server", lost.Sub(sent), pttl)
}

// TestFaultLatencyAboveTTL: replies slower than the TTL must never give a
// lease that looks valid: by the time it arrives the server may already
// have freed the key.
func TestFaultLatencyAboveTTL(t *testing.T) {
	s := redistest.Shared(t)
	px := redistest.NewProxy(t, s.Addr())
	o := s.Options()
	o.Addr = px.Addr()
	o.MaxRetries = -1
	const ttl = 100 * time.Millisecond
	l := newLocker(t, o, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: ttl}})
	ctx := testCtx(t)
	if _, err := l.TryAcquire(ctx, "fault/warmup", &dlock.LeaseOptions{TTL: time.Second}); err != nil {
		t.Fatal(err) // connect before the latency
	}
	px.Latency(3 * ttl)

	lease, err := l.TryAcquire(ctx, "fault/latency", nil)
	if err != nil {
		t.Logf("acquire failed, as it may: %v", err)
		return
	}
	if lease.Err() == nil && lease.ValidUntil().After(time.Now()) {
		t.Fatalf("acquire answered after %v with a TTL of %v gave a lease valid until %v", 3*ttl, ttl, lease.ValidUntil())
	}
	t.Logf("lease handed out already past its deadline (%v ago); error now: %v", time.Since(lease.ValidUntil()), lease.Err())
	if lease.Err() == nil {
		// Root behaviour: the lease is handed out already past its
		// deadline and is lost at the renewer's next look.
		select {
		case <-lease.Context().Done():
		case <-time.After(time.Second):
			t.Fatal("lease past its deadline was not lost")
		}
	}
}

// TestFaultRestartEmptyFencesIncrease: Redis restarts without its data
// (and so without the fence key); fences granted afterwards still exceed
// every earlier one.
func TestFaultRestartEmptyFencesIncrease(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	l := newLocker(t, s.Options(), nil)
	ctx := testCtx(t)
	var last uint64
	for range 5 {
		lease, err := l.TryAcquire(ctx, "fault/restart", nil)
		if err != nil {
			t.Fatal(err)
		}
		if lease.Fence() <= last {
			t.Fatalf("fence %d after %d", lease.Fence(), last)
		}
		last = lease.Fence()
		if err := lease.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s.Restart(t)
	lease, err := l.Acquire(ctx, "fault/restart", nil) // retries while reconnecting
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(ctx)
	if lease.Fence() <= last {
		t.Errorf("after an empty restart fence %d is not above the earlier %d", lease.Fence(), last)
	}
}

// TestFaultKeyDeletedByOthers: someone deletes the lock (DEL, FLUSHALL);
// the holder learns it at its next refresh.
func TestFaultKeyDeletedByOthers(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	admin := s.Client(t)
	const ttl, renew = 3 * time.Second, 100 * time.Millisecond
	for _, tt := range []struct {
		name   string
		delete func() error
	}{
		{"DEL", func() error { return admin.Del(testCtx(t), "dlock:{fault/deleted}").Err() }},
		{"FLUSHALL", func() error { return admin.FlushAll(testCtx(t)).Err() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLocker(t, s.Options(), &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: ttl, RenewInterval: renew}})
			ctx := testCtx(t)
			lease, err := l.TryAcquire(ctx, "fault/deleted", nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.delete(); err != nil {
				t.Fatal(err)
			}
			deleted := time.Now()
			select {
			case <-lease.Context().Done():
			case <-time.After(ttl / 2):
				t.Fatalf("holder did not learn of the deletion within %v (renewal every %v)", ttl/2, renew)
			}
			t.Logf("loss noticed %v after the %s", time.Since(deleted), tt.name)
			if !errors.Is(lease.Err(), dlock.ErrLeaseLost) || !errors.Is(lease.Err(), dlock.ErrNotHeld) {
				t.Errorf("lease error %v does not wrap ErrLeaseLost and ErrNotHeld", lease.Err())
			}
		})
	}
}

// TestFaultWrongType: another client's data at the lock key or fence key
// gives a clear error naming the key, and is left as it was.
func TestFaultWrongType(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	ctx := testCtx(t)
	theirs := []string{"dlock:{fault/list}", "dlock:{fault/hash}", "dlock:{fault/string}", "dlock:{fault/fence}:fence"}
	admin.Del(ctx, theirs...)
	t.Cleanup(func() { admin.Del(context.Background(), theirs...) })
	if err := admin.RPush(ctx, "dlock:{fault/list}", "their", "data").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.HSet(ctx, "dlock:{fault/hash}", "their", "data").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Set(ctx, "dlock:{fault/string}", "their data", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.HSet(ctx, "dlock:{fault/fence}:fence", "their", "data").Err(); err != nil {
		t.Fatal(err)
	}
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	req := func(key string) driver.Request {
		return driver.Request{Key: key, Token: "tok", TTL: time.Second, Owner: "test"}
	}
	for _, key := range []string{"fault/list", "fault/hash", "fault/string", "fault/fence"} {
		_, err := d.Acquire(ctx, req(key))
		t.Logf("Acquire %s: %v", key, err)
		if !errors.Is(err, redisdriver.ErrWrongType) {
			t.Errorf("Acquire %s: %v, want ErrWrongType", key, err)
		} else if !strings.Contains(err.Error(), "dlock:{"+key+"}") {
			t.Errorf("error %q does not name the Redis key", err)
		}
		if err != nil && strings.Contains(err.Error(), "user_script") {
			t.Errorf("error is a Lua error blob: %v", err)
		}
	}
	for _, key := range []string{"fault/list", "fault/hash", "fault/string"} {
		for name, err := range map[string]error{
			"Refresh": d.Refresh(ctx, key, "tok", time.Second),
			"Release": d.Release(ctx, key, "tok"),
		} {
			if !errors.Is(err, redisdriver.ErrWrongType) || !errors.Is(err, dlock.ErrNotHeld) {
				t.Errorf("%s %s: %v, want ErrWrongType and ErrNotHeld", name, key, err)
			}
		}
		if _, _, err := d.(driver.Inspector).Inspect(ctx, key); !errors.Is(err, redisdriver.ErrWrongType) {
			t.Errorf("Inspect %s: %v, want ErrWrongType", key, err)
		}
	}
	if n := admin.LLen(ctx, "dlock:{fault/list}").Val(); n != 2 {
		t.Errorf("their list has %d elements, want 2: the driver touched it", n)
	}
	if v := admin.HGet(ctx, "dlock:{fault/hash}", "their").Val(); v != "data" {
		t.Errorf("their hash changed: %q", v)
	}
	if v := admin.Get(ctx, "dlock:{fault/string}").Val(); v != "their data" {
		t.Errorf("their string changed: %q", v)
	}
	// Through the Locker: a clear error at once, not a retry loop.
	l := mustNew(t, s.Client(t), nil)
	defer l.Close()
	start := time.Now()
	_, err := l.Acquire(ctx, "fault/list", nil)
	if !errors.Is(err, redisdriver.ErrWrongType) {
		t.Errorf("Locker.Acquire: %v, want ErrWrongType", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("Locker.Acquire took %v to report a wrong type: it retried", time.Since(start))
	}
}

// TestFaultDisconnectIsUnavailable: with the server's port closed, calls
// fail with ErrUnavailable (the command surely did not run).
func TestFaultDisconnectIsUnavailable(t *testing.T) {
	s := redistest.Shared(t)
	px := redistest.NewProxy(t, s.Addr())
	o := s.Options()
	o.Addr = px.Addr()
	c := redis.NewClient(o)
	defer c.Close()
	d := redisdriver.NewDriver(c, nil)
	defer d.Close()
	ctx := testCtx(t)
	px.Disconnect()
	_, err := d.Acquire(ctx, driver.Request{Key: "fault/disconnect", Token: "t", TTL: time.Second})
	if !errors.Is(err, dlock.ErrUnavailable) {
		t.Errorf("Acquire with the port closed: %v, want ErrUnavailable", err)
	}
	px.Heal()
	if _, err := d.Acquire(ctx, driver.Request{Key: "fault/disconnect", Token: "t", TTL: time.Second}); err != nil {
		t.Errorf("Acquire after heal: %v", err)
	}
}

// TestFaultPartitionIsTimeout: a call lost in a partition has an unknown
// outcome: its error reports Timeout() and is not ErrUnavailable.
func TestFaultPartitionIsTimeout(t *testing.T) {
	s := redistest.Shared(t)
	px := redistest.NewProxy(t, s.Addr())
	o := s.Options()
	o.Addr = px.Addr()
	o.ReadTimeout = 200 * time.Millisecond
	o.MaxRetries = -1
	c := redis.NewClient(o)
	defer c.Close()
	d := redisdriver.NewDriver(c, nil)
	defer d.Close()
	ctx := testCtx(t)
	if _, err := d.Acquire(ctx, driver.Request{Key: "fault/timeout", Token: "t", TTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	px.Partition()
	err := d.Refresh(ctx, "fault/timeout", "t", time.Second)
	var te interface{ Timeout() bool }
	if !errors.As(err, &te) || !te.Timeout() {
		t.Errorf("Refresh in a partition: %v, want an error with Timeout() true", err)
	}
	if errors.Is(err, dlock.ErrUnavailable) {
		t.Errorf("Refresh in a partition: %v wraps ErrUnavailable, but it may have been applied", err)
	}
}
