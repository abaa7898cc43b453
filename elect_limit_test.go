package dlock_test

import (
	"context"
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
			l := store.Locker(&dlock.Options{TTL: time.Second, Owner: owner})
			defer l.Close()
			e := dlock.NewElection(l, "workers", &dlock.ElectionOptions{Limit: 2})
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
		for i, e := range elections {
			h, ok, err := e.Leader(ctx)
			if err != nil || !ok || h.Owner != "a" {
				t.Errorf("candidate %d: Leader = %+v, %v, %v; want a, the first of two leaders", i, h, ok, err)
			}
			hs, err := e.Leaders(ctx)
			if err != nil || len(hs) != 2 || hs[0].Owner != "a" || hs[1].Owner != "b" || hs[0].Fence >= hs[1].Fence {
				t.Errorf("candidate %d: Leaders = %+v, %v; want a then b, by fence", i, hs, err)
			}
		}
		other := store.Locker(nil)
		defer other.Close()
		single := dlock.NewElection(other, "workers", nil)
		if _, ok, err := single.Leader(ctx); err == nil || ok {
			t.Errorf("Leader with Limit 1 of a key led by a semaphore = %v, %v; want an error (ErrWrongKind), not a free key", ok, err)
		}
		cancel()
		wg.Wait()
	})
}
