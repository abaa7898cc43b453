package redlock_test

import (
	"context"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/redlock"
)

// TestWaitingOnHungNodeBoundsCalls: a caller waits for a held key while
// one node hangs (its calls end only at their deadline). Its attempts do
// not pile up on that node: each attempt's acquire and undo queued behind
// the last, two goroutines per attempt for as long as the first acquire
// listened (nearly the TTL), and then each undo waited its node timeout
// in turn. Here 20s of attempts every 10ms left thousands of goroutines.
func TestWaitingOnHungNodeBoundsCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newMemCluster(3)
		d, fs := c.newDriver(t, &redlock.Options{NodeTimeout: time.Second, DisableFencing: true})
		l := dlock.New(d, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 30 * time.Second, Retry: dlock.ExponentialBackoff(10*time.Millisecond, 10*time.Millisecond)}})
		defer l.Close()
		holder, err := l.TryAcquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		fs[2].Partition()
		before := runtime.NumGoroutine()
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := l.Acquire(ctx, "k", nil)
			done <- err
		}()
		most := 0
		for range 8 {
			time.Sleep(2500 * time.Millisecond)
			synctest.Wait()
			most = max(most, runtime.NumGoroutine()-before)
		}
		if err := <-done; err == nil {
			t.Error("Acquire of a held key succeeded")
		}
		if most > 50 {
			t.Errorf("waiting 20s on a held key with one node hung ran up to %d more goroutines; want a few, however many attempts", most)
		}
		if err := holder.Release(t.Context()); err != nil {
			t.Error(err)
		}
	})
}
