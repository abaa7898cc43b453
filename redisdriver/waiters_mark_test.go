package redisdriver_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// commandCalls returns the calls of each command since the last CONFIG
// RESETSTAT (INFO commandstats), by lower-case name.
func commandCalls(t *testing.T, c *redis.Client) map[string]int {
	t.Helper()
	info, err := c.Info(testCtx(t), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		v, _, _ := strings.Cut(strings.TrimPrefix(stats, "calls="), ",")
		calls[strings.TrimPrefix(name, "cmdstat_")], _ = strconv.Atoi(v)
	}
	return calls
}

// TestReleaseWithoutWaitersWakesNobody: a release of a lock that no
// attempt found busy runs no PUBLISH and does not look at the queue
// (ZPOPMIN), with fences and without; one that an attempt found busy
// does both. Before the "waiters present" mark every release did.
func TestReleaseWithoutWaitersWakesNobody(t *testing.T) {
	verifyNoLeaks(t)
	s := redistest.StartProcess(t, nil)
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	ctx := testCtx(t)
	for _, noFence := range []bool{false, true} {
		key := "mark/" + strconv.FormatBool(noFence)
		pair := func(busy bool) map[string]int {
			t.Helper()
			if err := admin.ConfigResetStat(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			r := req(key, "holder")
			r.NoFence = noFence
			if res, err := d.Acquire(ctx, r); err != nil || !res.Acquired {
				t.Fatalf("acquire: %+v, %v", res, err)
			}
			if busy {
				busyAttempt(t, d, key)
			}
			if err := d.Release(ctx, key, "holder"); err != nil {
				t.Fatal(err)
			}
			return commandCalls(t, admin)
		}
		if calls := pair(false); calls["publish"] != 0 || calls["zpopmin"] != 0 {
			t.Errorf("NoFence %v: a release nobody waited for ran PUBLISH %d times and ZPOPMIN %d times, want none",
				noFence, calls["publish"], calls["zpopmin"])
		}
		if calls := pair(true); calls["publish"] != 1 {
			t.Errorf("NoFence %v: a release after a busy attempt ran PUBLISH %d times, want 1", noFence, calls["publish"])
		}
		if calls := pair(false); calls["publish"] != 0 {
			t.Errorf("NoFence %v: the mark outlived its lock: the next release nobody waited for ran PUBLISH %d times", noFence, calls["publish"])
		}
	}
}

// TestReleaseWakesWaiterAfterBusyAttempt: a subscriber whose attempt
// found the key busy is woken by the release, whether its attempt waited
// (Wait, queued) or not (Wait 0, a plain subscriber), on a lock with
// fences and without.
func TestReleaseWakesWaiterAfterBusyAttempt(t *testing.T) {
	s := redistest.Shared(t)
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	ctx := testCtx(t)
	for _, c := range []struct {
		name          string
		wait          time.Duration
		noFence       bool
		subscribeWith string // the subscription's token
	}{
		{"Plain", 0, false, ""},
		{"PlainNoFence", 0, true, ""},
		{"Queued", time.Minute, false, "waiter"},
	} {
		t.Run(c.name, func(t *testing.T) {
			key := "markwake/" + c.name
			h := req(key, "holder")
			h.NoFence = c.noFence
			if res, err := d.Acquire(ctx, h); err != nil || !res.Acquired {
				t.Fatalf("acquire: %+v, %v", res, err)
			}
			ch, cancel, err := d.(driver.Notifier).Subscribe(ctx, key, c.subscribeWith)
			if err != nil {
				t.Fatal(err)
			}
			defer cancel()
			w := req(key, "waiter")
			w.Wait, w.NoFence = c.wait, c.noFence
			if res, err := d.Acquire(ctx, w); err != nil || res.Acquired {
				t.Fatalf("waiter's attempt on the held key: %+v, %v; want busy", res, err)
			}
			if err := d.Release(ctx, key, "holder"); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ch:
			case <-time.After(wakeBound):
				t.Fatalf("waiter not woken within %v by the release of a lock its attempt found busy", wakeBound)
			}
		})
	}
}

// TestMarkPassesToQueuedGrant: a release that wakes the first queued
// waiter alone leaves a plain subscriber waiting; the queued waiter's own
// grant carries the mark on, so that its release wakes the subscriber,
// though no attempt found the waiter's lock busy.
func TestMarkPassesToQueuedGrant(t *testing.T) {
	s := redistest.Shared(t)
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	n := d.(driver.Notifier)
	ctx := testCtx(t)
	const key = "markpass/k"
	if res, err := d.Acquire(ctx, req(key, "holder")); err != nil || !res.Acquired {
		t.Fatalf("acquire: %+v, %v", res, err)
	}
	plain, cancelPlain, err := n.Subscribe(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cancelPlain()
	busyAttempt(t, d, key)
	queued, cancelQueued, err := n.Subscribe(ctx, key, "queued")
	if err != nil {
		t.Fatal(err)
	}
	defer cancelQueued()
	q := req(key, "queued")
	q.Wait = time.Minute
	if res, err := d.Acquire(ctx, q); err != nil || res.Acquired {
		t.Fatalf("queued attempt on the held key: %+v, %v; want busy", res, err)
	}
	if err := d.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-queued:
	case <-time.After(wakeBound):
		t.Fatal("the queued waiter was not woken at its turn")
	}
	waitDrained(plain)
	if res, err := d.Acquire(ctx, q); err != nil || !res.Acquired {
		t.Fatalf("queued waiter's attempt after its wake-up: %+v, %v; want acquired", res, err)
	}
	if err := d.Release(ctx, key, "queued"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-plain:
	case <-time.After(wakeBound):
		t.Fatal("the plain subscriber was not woken by the release of the queued waiter's grant")
	}
}

// waitDrained takes a wake-up from ch if one is there (the first release
// may wake every subscriber, as when the queued waiter had not yet
// subscribed on the server's side).
func waitDrained(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// TestInspectSinceWithMark: a lock that an attempt found busy reports
// the same holder, fence and SINCE as before: the mark is not part of
// them.
func TestInspectSinceWithMark(t *testing.T) {
	s := redistest.Shared(t)
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	ctx := context.Background()
	const key = "markinspect/k"
	res, err := d.Acquire(ctx, req(key, "holder"))
	if err != nil || !res.Acquired {
		t.Fatalf("acquire: %+v, %v", res, err)
	}
	defer d.Release(ctx, key, "holder")
	before, ok, err := d.(driver.Inspector).Inspect(ctx, key)
	if err != nil || !ok {
		t.Fatalf("Inspect: %v, %v", ok, err)
	}
	busyAttempt(t, d, key)
	after, ok, err := d.(driver.Inspector).Inspect(ctx, key)
	if err != nil || !ok {
		t.Fatalf("Inspect: %v, %v", ok, err)
	}
	if after.Since.IsZero() || !after.Since.Equal(before.Since) || after.Fence != res.Fence || after.Owner != before.Owner {
		t.Errorf("after a busy attempt Inspect = %+v, want %+v (TTL aside)", after, before)
	}
	// The holder's retried request still finds its own lock, same fence.
	again, err := d.Acquire(ctx, req(key, "holder"))
	if err != nil || !again.Acquired || again.Fence != res.Fence {
		t.Errorf("the holder's retried request on a marked lock: %+v, %v; want acquired with fence %d", again, err, res.Fence)
	}
}
