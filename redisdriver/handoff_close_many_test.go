package redisdriver_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestHandoffCloseWhileManyGiveUp: one Locker, whose pub/sub connection is
// slow (20 ms), has many callers waiting on several keys; their holders
// release, half the callers' contexts end and the Locker is closed, all
// within the same millisecond. Close returns (no deadlock) within the
// bounds of its ReleaseTimeout and the pub/sub read timeout, every call
// returns, and no key is left held by a waiter's grant.
func TestHandoffCloseWhileManyGiveUp(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	ctx := testCtx(t)
	holderL := newLocker(t, s.Options(), nil)
	opts := &dlock.LeaseOptions{TTL: 30 * time.Second, Retry: noPolling, Owner: "waiter"}
	for round := range 5 {
		px := redistest.NewProxy(t, s.Addr())
		l := lossyWaiter(t, s, px)
		px.Latency(20 * time.Millisecond)
		var keys []string
		var leases []*dlock.Lease
		for k := range 6 {
			key := uniqueKey(fmt.Sprintf("handoff/close-many/%d/", k))
			lease, err := holderL.TryAcquire(ctx, key, &dlock.LeaseOptions{TTL: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			keys, leases = append(keys, key), append(leases, lease)
		}
		gctx, giveUp := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for i := range 36 {
			wctx := ctx
			if i%2 == 0 {
				wctx = gctx
			}
			wg.Go(func() {
				if lease, err := l.Acquire(wctx, keys[i%len(keys)], opts); err == nil {
					lease.Release(ctx)
				}
			})
		}
		for _, key := range keys {
			waitAttemptQueued(t, admin, key)
		}
		time.Sleep(100 * time.Millisecond) // all subscribed and queued, mostly
		start := time.Now()
		for _, lease := range leases {
			go func() {
				time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
				lease.Release(ctx)
			}()
		}
		time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
		giveUp()
		closed := make(chan error, 1)
		go func() { closed <- l.Close() }()
		select {
		case <-closed:
		case <-time.After(15 * time.Second):
			t.Fatalf("round %d: Close has not returned after 15 s", round)
		}
		wg.Wait()
		t.Logf("round %d: Close and every call returned after %v", round, time.Since(start))
		time.Sleep(50 * time.Millisecond) // the holders' releases, at most 1 ms late
		for _, key := range keys {
			if v, err := admin.Get(ctx, "dlock:{"+key+"}").Result(); err != redis.Nil {
				t.Errorf("round %d: after Close and every call returned, %s holds %q (%v)", round, key, v, err)
			}
		}
	}
}
