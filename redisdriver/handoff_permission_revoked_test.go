package redisdriver_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// subscribeCalls returns how many SUBSCRIBE commands the server ran, from
// INFO commandstats, failed ones included.
func subscribeCalls(t *testing.T, admin *redis.Client) int {
	t.Helper()
	info, err := admin.Info(testCtx(t), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.SplitSeq(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_subscribe:")
		if !ok {
			continue
		}
		for f := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(f, "=")
			if k == "calls" || k == "rejected_calls" || k == "failed_calls" {
				c, _ := strconv.Atoi(v)
				n += c
			}
		}
	}
	return n
}

// TestHandoffChannelPermissionRevoked: the waiters' user loses SUBSCRIBE
// while they wait, and their pub/sub connection is dropped. The
// notifier's re-subscription is refused
// with NOPERM, a permanent error: the waiters fall back to polling at
// their backoff and still take the key once it is free, and nothing
// retries SUBSCRIBE in a loop.
func TestHandoffChannelPermissionRevoked(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	admin := s.Client(t)
	ctx := testCtx(t)
	if err := admin.Do(ctx, "ACL", "SETUSER", "revoked", "on", ">revoked-secret-pw", "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	o := s.Options()
	o.Username, o.Password = "revoked", "revoked-secret-pw"
	wc := redis.NewClient(o)
	t.Cleanup(func() { wc.Close() })
	waiter := mustNew(t, wc, nil)
	t.Cleanup(func() { waiter.Close() })
	holder := newLocker(t, s.Options(), nil)
	const key = "handoff/noperm"
	lease, err := holder.TryAcquire(ctx, key, &dlock.LeaseOptions{TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan acquired, 4)
	for range 4 {
		go func() {
			got <- <-goAcquire(ctx, waiter, key, &dlock.LeaseOptions{TTL: 30 * time.Second, Retry: dlock.ExponentialBackoff(200*time.Millisecond, 200*time.Millisecond)})
		}()
	}
	waitAttemptQueued(t, admin, key)
	time.Sleep(200 * time.Millisecond)
	if err := admin.Do(ctx, "ACL", "SETUSER", "revoked", "-subscribe").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	before := subscribeCalls(t, admin)
	time.Sleep(2 * time.Second)
	if n := subscribeCalls(t, admin) - before; n > 4 {
		t.Errorf("%d SUBSCRIBE commands in 2 s after the permission was revoked, for 4 waiters polling every 200 ms: a loop", n)
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	for i := range 4 {
		select {
		case a := <-got:
			if a.err != nil {
				t.Fatalf("waiter %d: %v", i, a.err)
			}
			if err := a.lease.Release(ctx); err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d waiters took the key; the next has not 10 s after the last release", i)
		}
	}
	t.Logf("4 waiters took the key in turn within %v of the release", time.Since(released))
}
