package dlock_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/memdriver"
)

// TestLeaseCallsRace: several goroutines per lease call Refresh with
// changing TTLs, Err, WithMargin and Release at random while renewal runs
// and Close ends it all (run with -race). Every lease must end reporting
// an error; while it reports none, another client cannot take its key;
// after Close every key is free; each lease's events come in order.
func TestLeaseCallsRace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		var rec recorder
		l := store.Locker(&dlock.Options{Observer: rec.Observe, LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
		other := store.Locker(nil)
		defer other.Close()
		const leases = 8
		var wg sync.WaitGroup
		all := make([]*dlock.Lease, leases)
		for i := range leases {
			lease, err := l.Acquire(t.Context(), fmt.Sprint("k", i), nil)
			if err != nil {
				t.Fatal(err)
			}
			all[i] = lease
			for range 3 {
				wg.Go(func() {
					for range 40 {
						switch rand.N(6) {
						case 0, 1:
							ttl := time.Duration(rand.N(4)) * 500 * time.Millisecond // 0 keeps the TTL
							lease.Refresh(t.Context(), ttl)
						case 2:
							ctx, cancel := lease.WithMargin(t.Context(), time.Duration(rand.N(200))*time.Millisecond)
							select {
							case <-ctx.Done():
							case <-time.After(time.Duration(rand.N(300)) * time.Millisecond):
							}
							cancel()
						case 3:
							if rand.N(10) == 0 {
								lease.Release(t.Context())
							}
						default:
							// Release ends a lease before it frees the key:
							// Err looked at after the grant must report it.
							if second, err := other.TryAcquire(t.Context(), lease.Key(), nil); err == nil {
								if lease.Err() == nil {
									t.Errorf("two holders of %s: fence %d granted while fence %d reports itself valid", lease.Key(), second.Fence(), lease.Fence())
								}
								second.Release(t.Context())
							}
						}
						time.Sleep(time.Duration(rand.N(100)) * time.Millisecond)
					}
				})
			}
		}
		time.Sleep(2 * time.Second)
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		wg.Wait()
		synctest.Wait() // the events are reported
		// Each lease's events: granted, renewals, at most one lost, and
		// at most one released, last.
		rec.mu.Lock()
		state := map[string]string{}
		for _, e := range rec.events {
			k := fmt.Sprint(e.Key, "/", e.Fence)
			prev := state[k]
			ok := false
			switch e.Kind {
			case dlock.EventGranted:
				ok = prev == ""
			case dlock.EventRefreshed, dlock.EventRefreshFailed:
				ok = prev == "granted"
			case dlock.EventLost:
				ok = prev == "granted"
			case dlock.EventReleased:
				ok = prev == "granted" || prev == "lost"
			default:
				continue
			}
			if !ok {
				t.Errorf("lease %s: %v after %q", k, e.Kind, prev)
			}
			if e.Kind != dlock.EventRefreshed && e.Kind != dlock.EventRefreshFailed {
				state[k] = e.Kind.String()
			}
		}
		rec.mu.Unlock()
		for _, lease := range all {
			if err := lease.Err(); err == nil || !errors.Is(err, dlock.ErrNotHeld) && !errors.Is(err, dlock.ErrLeaseLost) {
				t.Errorf("lease %s after Close: Err = %v; want released or lost", lease.Key(), err)
			}
			if second, err := other.TryAcquire(t.Context(), lease.Key(), nil); err != nil {
				t.Errorf("%s still held after Close: %v", lease.Key(), err)
			} else {
				second.Release(t.Context())
			}
		}
	})
}
