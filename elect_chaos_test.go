package dlock_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/memdriver"
)

// TestElectionResignRaces: three candidates, Resign called at random from
// outside, lead functions that return on their own at random, Run started
// again when it returns. A lead function that starts must find every other
// lead context ended: at most one leader as leaders see it.
func TestElectionResignRaces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		ctx, stop := context.WithTimeout(t.Context(), 20*time.Second)
		defer stop()
		var mu sync.Mutex
		leading := map[context.Context]int{}
		terms := 0
		var wg sync.WaitGroup
		for i := range 3 {
			l := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 300 * time.Millisecond}})
			defer l.Close()
			e := dlock.NewElection(l, "leader", &dlock.ElectionOptions{ResignDelay: 50 * time.Millisecond})
			wg.Go(func() {
				for ctx.Err() == nil {
					time.Sleep(time.Duration(rand.N(200)) * time.Millisecond)
					e.Resign()
				}
			})
			wg.Go(func() {
				for ctx.Err() == nil {
					e.Run(ctx, func(lctx context.Context, _ *dlock.Lease) error {
						mu.Lock()
						terms++
						for other, j := range leading {
							if other.Err() == nil {
								t.Errorf("two leaders: %d elected while %d's lead context is live", i, j)
							}
						}
						leading[lctx] = i
						mu.Unlock()
						defer func() {
							mu.Lock()
							delete(leading, lctx)
							mu.Unlock()
						}()
						select {
						case <-lctx.Done():
						case <-time.After(time.Duration(rand.N(500)) * time.Millisecond):
						}
						return nil
					})
				}
			})
		}
		wg.Wait()
		if terms < 10 {
			t.Errorf("%d terms in 20s; the test exercised little", terms)
		}
	})
}
