package redisdriver_test

import (
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// TestNotifierFollowsSentinelSwitch: the master freezes (SIGSTOP: its
// connections stay open and silent) and Sentinel promotes the replica.
// The waiters' subscriptions must move to the new master as soon as the
// Sentinel announces the switch, not when the notifier's idle ping finds
// the old connection dead (two health intervals, 30 s): meanwhile every
// release there would find no waiter listening, empty the queue and
// leave the waiters asleep.
func TestNotifierFollowsSentinelSwitch(t *testing.T) {
	if testing.Short() {
		t.Skip("a Sentinel failover takes seconds")
	}
	s := redistest.StartSentinel(t)
	ctx := testCtx(t)
	u, err := url.Parse("redis+sentinel://" + s.SentinelServer().Addr() + "/" + s.MasterName())
	if err != nil {
		t.Fatal(err)
	}
	open, _ := driver.Lookup(redisdriver.SchemeSentinel)
	d, err := open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	key := uniqueKey("handoff/sentinel-switch/")
	turns, cancel, err := d.(driver.Handoff).SubscribeHandoff(ctx, key, "w")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	pid := serverPID(t, s.Master().Client(t))
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) })
	newMaster := s.Replica().Client(t)
	poll(t, "the replica to be promoted", func() error {
		r, err := newMaster.Do(ctx, "ROLE").Slice()
		if err != nil {
			return err
		}
		if r[0] != "master" {
			return errNotYet
		}
		return nil
	})
	promoted := time.Now()
	ch := waiterChannel(key, "w")
	for {
		m, err := newMaster.PubSubNumSub(ctx, ch).Result()
		if err != nil {
			t.Fatal(err)
		}
		if m[ch] == 1 {
			break
		}
		if time.Since(promoted) > 5*time.Second {
			t.Fatalf("5s after the promotion, the waiter is still not subscribed on the new master")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("subscribed on the new master %v after its promotion", time.Since(promoted))
	holder := newHandoffDriver(t, redis.NewClient(s.Replica().Options()))
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second}); err != nil || !res.Acquired {
		t.Fatalf("holder on the new master: %+v %v", res, err)
	}
	for len(turns) > 0 {
		<-turns // the wake-up of the resubscription
	}
	queue(t, ctx, d, key, "w", 1, 30*time.Second)
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	if turn := turnWithin(t, turns, 5*time.Second, "the waiter after the switch"); !turn.Granted {
		t.Fatalf("Turn = %+v, want Granted", turn)
	}
}
