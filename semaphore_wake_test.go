package dlock_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// TestSemaphoreWaitersWokenOneRelease: with several waiters on a full
// semaphore, each release lets exactly one more in at once, and a slot
// freed by its holder's expiry (a holder that never renews) is taken at
// that expiry, not a backoff later.
func TestSemaphoreWaitersWokenOneRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		l := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}})
		defer l.Close()
		semKey, sem := "k", &dlock.LeaseOptions{Limit: 2}
		a, err := l.Acquire(t.Context(), semKey, sem)
		if err != nil {
			t.Fatal(err)
		}
		// b holds without renewal, for 30s.
		raw := store.Driver().(semClient)
		defer raw.Close()
		if res, err := raw.AcquireSlot(t.Context(), driver.Request{Key: "k", Token: "b", TTL: 30 * time.Second}, 2); err != nil || !res.Acquired {
			t.Fatalf("AcquireSlot = %+v, %v", res, err)
		}
		got := make(chan *dlock.Lease, 3)
		for range 3 {
			wl := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}})
			defer wl.Close()
			go func() {
				w, err := wl.Acquire(t.Context(), "k", &dlock.LeaseOptions{Limit: 2})
				if err != nil {
					t.Error(err)
				}
				got <- w
			}()
		}
		synctest.Wait()
		if len(got) != 0 {
			t.Fatalf("%d waiters got a slot of a full semaphore", len(got))
		}
		start := time.Now()
		a.Release(t.Context())
		first := <-got
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("a waiter got the released slot %v after the release", d)
		}
		synctest.Wait()
		if len(got) != 0 {
			t.Fatalf("one release let %d more waiters in", 1+len(got))
		}
		second := <-got
		if d := time.Since(start); d < 29*time.Second || d > 31*time.Second {
			t.Errorf("a waiter got the expired slot %v after the release; want at its expiry, 30s", d)
		}
		synctest.Wait()
		if len(got) != 0 {
			t.Fatalf("%d waiters in with the slots full", len(got))
		}
		first.Release(t.Context())
		third := <-got
		third.Release(t.Context())
		second.Release(t.Context())
	})
}
