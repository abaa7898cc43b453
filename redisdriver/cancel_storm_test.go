package redisdriver_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
)

// TestCancelStormLeavesNothing: waiters on a lock and on a semaphore of
// two, half of them behind a slow network, give up at random moments
// (while queued, while an attempt or its undo is in flight, just as a
// grant comes). Never more than the limit hold at once, and when every
// caller has returned nothing holds either key: no grant is left behind
// by a waiter that gave up.
func TestCancelStormLeavesNothing(t *testing.T) {
	s := redistest.Shared(t)
	px := redistest.NewProxy(t, s.Addr())
	slow := s.Options()
	slow.Addr = px.Addr()
	ctx := testCtx(t)
	opts := &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 20 * time.Second, Retry: dlock.ExponentialBackoff(5*time.Millisecond, 200*time.Millisecond)}}
	var lockers []*dlock.Locker
	for i := range 6 {
		o := s.Options()
		if i%2 == 1 {
			o = slow
		}
		lockers = append(lockers, newLocker(t, o, opts))
	}
	// Connect the slow ones before the latency starts.
	for _, l := range lockers {
		if _, err := l.Holders(ctx, "storm/lock"); err != nil {
			t.Fatal(err)
		}
	}
	px.Latency(15 * time.Millisecond)
	keys := []struct {
		key   string
		limit int
	}{{"storm/lock", 1}, {"storm/sem", 2}}
	var holding [2]atomic.Int32
	var grants atomic.Int32
	var wg sync.WaitGroup
	deadline := time.Now().Add(4 * time.Second)
	for i, l := range lockers {
		for j := range 3 {
			k := (i + j) % 2
			wg.Go(func() {
				rnd := rand.New(rand.NewPCG(uint64(i), uint64(j)))
				for time.Now().Before(deadline) {
					actx, cancel := context.WithTimeout(ctx, time.Duration(rnd.IntN(60))*time.Millisecond)
					le, err := l.Acquire(actx, keys[k].key, &dlock.LeaseOptions{Limit: keys[k].limit})
					cancel()
					if err != nil {
						continue
					}
					grants.Add(1)
					if n := holding[k].Add(1); int(n) > keys[k].limit {
						t.Errorf("%d holders of %q with limit %d", n, keys[k].key, keys[k].limit)
					}
					time.Sleep(time.Duration(rnd.IntN(5)) * time.Millisecond)
					holding[k].Add(-1)
					if err := le.Release(ctx); err != nil {
						t.Errorf("Release of %q: %v", keys[k].key, err)
					}
				}
			})
		}
	}
	wg.Wait()
	px.Heal()
	for _, k := range keys {
		hs, err := lockers[0].Holders(ctx, k.key)
		if err != nil || len(hs) != 0 {
			t.Errorf("Holders of %q after every caller returned = %+v, %v; want none", k.key, hs, err)
		}
	}
	if grants.Load() < 10 {
		t.Errorf("%d grants in all; want many", grants.Load())
	}
	t.Logf("%d grants", grants.Load())
}
