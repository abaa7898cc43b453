package redisdriver_test

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestHandoffCloseWhileWaitersWait: a Locker is closed while its callers
// wait for a key whose holder releases it at about the same moment (the
// release hands it to one of them). Once Close and every call returned,
// nobody holds the key: a grant in flight is not lost with the Locker.
func TestHandoffCloseWhileWaitersWait(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	ctx := testCtx(t)
	holderL := newLocker(t, s.Options(), nil)
	opts := &dlock.LeaseOptions{TTL: 30 * time.Second, Retry: noPolling}
	for round := range 20 {
		key := uniqueKey("handoff/close/")
		lease, err := holderL.TryAcquire(ctx, key, opts)
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(s.Options())
		l := mustNew(t, c, nil)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				if lease, err := l.Acquire(ctx, key, opts); err == nil {
					lease.Release(ctx)
				}
			})
		}
		waitAttemptQueued(t, admin, key)
		released := make(chan struct{})
		go func() {
			defer close(released)
			time.Sleep(time.Duration(rand.IntN(400)) * time.Microsecond)
			lease.Release(ctx)
		}()
		time.Sleep(time.Duration(rand.IntN(400)) * time.Microsecond)
		l.Close()
		wg.Wait()
		c.Close()
		<-released
		if v, err := admin.Get(ctx, "dlock:{"+key+"}").Result(); err != redis.Nil {
			t.Fatalf("round %d: after Close, the holder's release and every call returned, the key holds %q (%v)", round, v, err)
		}
	}
}
