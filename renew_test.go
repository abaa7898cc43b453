package dlock_test

import (
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/memdriver"
)

// TestLoopRestartKeepsTimer holds an idle renewal loop at its exit while a
// new lease starts the next loop, then lets the old one finish: the new
// loop's timer must still fire, so the lease is renewed (issue 17, item 1:
// the old loop's deferred Stop stopped the new loop's timer, and the lease
// was neither renewed nor declared lost).
func TestLoopRestartKeepsTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exiting, resume := make(chan struct{}), make(chan struct{})
		var once sync.Once
		dlock.SetLoopExitHook(func() {
			once.Do(func() {
				close(exiting)
				<-resume
			})
		})
		defer dlock.SetLoopExitHook(nil)

		store := memdriver.NewStore()
		l := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
		defer l.Close()
		first, err := l.TryAcquire(t.Context(), "first", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := first.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		<-exiting // the idle loop gave up its lock and is about to return
		lease, err := l.TryAcquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the new loop has set its timer
		close(resume)

		time.Sleep(3 * time.Second)
		if err := lease.Err(); err != nil {
			t.Fatalf("lease ended after a loop restart: %v; renewal should keep it", err)
		}
		other := store.Locker(nil)
		defer other.Close()
		if _, err := other.TryAcquire(t.Context(), "k", nil); !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("another Locker's TryAcquire = %v; want ErrNotAcquired: the lease was not renewed after the loop restarted", err)
		}
		if err := lease.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}
