package redisdriver_test

import (
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
)

// TestReleaseWithoutQueueTouchesNoQueue: the release of a key no waiter
// queued on runs EXISTS, GET, DEL and PUBLISH, and no command on the
// queue (a ZREM and a ZPOPMIN of a queue that is not there cost every
// release their share of the script); with a waiter queued, the release
// pops the queue and wakes it. Counted by the server (INFO
// commandstats, a server of its own), not timed.
func TestReleaseWithoutQueueTouchesNoQueue(t *testing.T) {
	srv := redistest.StartProcess(t, nil)
	admin := srv.Client(t)
	d := redisdriver.NewDriver(srv.Client(t), nil)
	t.Cleanup(func() { d.Close() })
	ctx := testCtx(t)
	calls := func() map[string]string {
		t.Helper()
		info, err := admin.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, l := range strings.Split(info, "\n") {
			name, stats, ok := strings.Cut(strings.TrimSpace(l), ":")
			if ok && strings.HasPrefix(name, "cmdstat_") {
				calls, _, _ := strings.Cut(strings.TrimPrefix(stats, "calls="), ",")
				m[strings.TrimPrefix(name, "cmdstat_")] = calls
			}
		}
		return m
	}
	release := func(key, token string) map[string]string {
		t.Helper()
		if err := admin.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := d.Release(ctx, key, token); err != nil {
			t.Fatal(err)
		}
		return calls()
	}

	if res, err := d.Acquire(ctx, req("alone", "holder")); err != nil || !res.Acquired {
		t.Fatalf("Acquire = %+v, %v", res, err)
	}
	got := release("alone", "holder")
	for _, cmd := range []string{"exists", "get", "del", "publish"} {
		if got[cmd] != "1" {
			t.Errorf("release with no queue: %s called %q times, want once (all: %v)", cmd, got[cmd], got)
		}
	}
	for _, cmd := range []string{"zrem", "zpopmin", "hget", "hdel", "time"} {
		if got[cmd] != "" {
			t.Errorf("release with no queue: %s called %s times, want never (all: %v)", cmd, got[cmd], got)
		}
	}

	if res, err := d.Acquire(ctx, req("queued", "holder")); err != nil || !res.Acquired {
		t.Fatalf("Acquire = %+v, %v", res, err)
	}
	if res, err := acquireQueued(ctx, t, d, req("queued", "waiter"), driver.Queued{Wait: 10 * time.Second}); err != nil || res.Acquired {
		t.Fatalf("waiter's Acquire = %+v, %v; want busy", res, err)
	}
	got = release("queued", "holder")
	if got["zpopmin"] == "" || got["publish"] != "1" {
		// The waiter does not listen: it is popped, then the release
		// wakes every subscriber.
		t.Errorf("release with a waiter queued: zpopmin %q, publish %q times, want the queue popped and one publish (all: %v)", got["zpopmin"], got["publish"], got)
	}
	if n, err := admin.Exists(ctx, redisdriver.DefaultPrefix+"{queued}:queue").Result(); err != nil || n != 0 {
		t.Errorf("queue after the release: EXISTS = %d, %v; want it popped empty", n, err)
	}
}
