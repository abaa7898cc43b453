package dlock_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/memdriver"
)

// TestElectionLeaderHonoursLimit: with Limit 2 and two candidates leading,
// Leader reports one of them (the first elected) and Leaders both. Leader
// inspected a lock whatever the Limit: memdriver said "no leader", Redis
// answered with a kind error.
func TestElectionLeaderHonoursLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var elections []*dlock.Election
		var leading sync.WaitGroup
		leading.Add(2)
		var wg sync.WaitGroup
		for _, owner := range []string{"a", "b"} {
			l := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second, Owner: owner}})
			defer l.Close()
			e := dlock.NewElection(l, "workers", &dlock.ElectionOptions{Lease: &dlock.LeaseOptions{Limit: 2}})
			elections = append(elections, e)
			wg.Go(func() {
				e.Run(ctx, func(ctx context.Context, _ *dlock.Lease) error {
					leading.Done()
					<-ctx.Done()
					return ctx.Err()
				})
			})
			synctest.Wait() // a is elected before b
		}
		leading.Wait()
		other := store.Locker(nil)
		defer other.Close()
		hs, err := other.Holders(ctx, "workers")
		if err != nil || len(hs) != 2 || hs[0].Owner != "a" || hs[1].Owner != "b" || hs[0].Fence >= hs[1].Fence || hs[0].Limit != 2 {
			t.Errorf("Holders = %+v, %v; want a then b, by fence, with limit 2", hs, err)
		}
		if _, err := other.TryAcquire(ctx, "workers", nil); !errors.Is(err, dlock.ErrLimitMismatch) {
			t.Errorf("TryAcquire of a lock on a key led by a semaphore = %v; want ErrLimitMismatch", err)
		}
		cancel()
		wg.Wait()
	})
}
