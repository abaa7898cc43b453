package dlock_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// TestWithMarginFollowsRenewal: while renewals succeed the margin context
// stays open; once they fail it is cancelled exactly margin before the
// local deadline, while the lease is still valid, with a cause wrapping
// ErrLeaseLost.
func TestWithMarginFollowsRenewal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fault := &refreshFault{Locker: memdriver.NewStore().Driver()}
		l := dlock.New(fault, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 3 * time.Second}})
		defer l.Close()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer lease.Release(t.Context())
		const margin = 500 * time.Millisecond
		ctx, cancel := lease.WithMargin(t.Context(), margin)
		defer cancel()
		// Off the renewal grid (every 1s): a renewal at the very instant
		// of the wake-up would race failWith and move the deadline after
		// it was read below.
		time.Sleep(10*time.Second + 500*time.Millisecond)
		if err := ctx.Err(); err != nil {
			t.Fatalf("margin context ended under healthy renewal: %v", context.Cause(ctx))
		}
		fault.failWith(driver.ErrUnavailable)
		deadline := lease.ValidUntil() // the last confirmed one: renewals fail from now
		<-ctx.Done()
		if got, want := time.Until(deadline), margin; got != want {
			t.Errorf("margin context ended %v before the local deadline; want %v", got, want)
		}
		if err := lease.Err(); err != nil {
			t.Errorf("lease already lost at the margin: %v", err)
		}
		if cause := context.Cause(ctx); !errors.Is(cause, dlock.ErrLeaseLost) {
			t.Errorf("cause %v; want ErrLeaseLost", cause)
		}
		<-lease.Context().Done()
		if got := time.Until(deadline); got != 0 {
			t.Errorf("lease lost %v before its deadline; want at it", got)
		}
	})
}

// TestWithMarginShorterTTL: a Refresh to a shorter TTL moves the cut-off
// earlier with the deadline.
func TestWithMarginShorterTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := memdriver.New(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 10 * time.Second, RenewInterval: -1}})
		defer l.Close()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer lease.Release(t.Context())
		ctx, cancel := lease.WithMargin(t.Context(), 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := lease.Refresh(t.Context(), 2*time.Second); err != nil {
			t.Fatal(err)
		}
		<-ctx.Done()
		// 2s − drift (2s/100 + 2ms) − margin.
		if got, want := time.Since(start), 1478*time.Millisecond; got != want {
			t.Errorf("margin context ended after %v; want %v", got, want)
		}
	})
}

// TestWithMarginEnds: the margin context ends with the lease, with the
// lease's cause, and with its parent; a margin larger than what is left
// ends it at once. The bubble's end checks that nothing is left running.
func TestWithMarginEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := memdriver.New(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
		defer l.Close()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		parent, stop := context.WithCancel(t.Context())
		byParent, cancel1 := lease.WithMargin(parent, 100*time.Millisecond)
		defer cancel1()
		byLease, cancel2 := lease.WithMargin(t.Context(), 100*time.Millisecond)
		defer cancel2()
		atOnce, cancel3 := lease.WithMargin(t.Context(), time.Hour)
		defer cancel3()
		if !errors.Is(context.Cause(atOnce), dlock.ErrLeaseLost) {
			t.Errorf("a margin above the time left: cause %v; want ErrLeaseLost at once", context.Cause(atOnce))
		}
		stop()
		<-byParent.Done()
		if err := byLease.Err(); err != nil {
			t.Fatalf("cancelling one margin context's parent ended another: %v", err)
		}
		if err := lease.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		<-byLease.Done()
		if cause := context.Cause(byLease); !errors.Is(cause, dlock.ErrNotHeld) || errors.Is(cause, dlock.ErrLeaseLost) {
			t.Errorf("after Release the cause is %v; want the lease's (released)", cause)
		}
	})
}

// TestValidUntilConcurrent reads ValidUntil, Done and Err from several
// goroutines while renewals move the deadline (run with -race): the
// deadline read is always in the future under healthy renewal and never
// goes backwards.
func TestValidUntilConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := memdriver.New(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
		defer l.Close()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer lease.Release(t.Context())
		done := make(chan struct{})
		for range 4 {
			go func() {
				defer func() { done <- struct{}{} }()
				var last time.Time
				for range 300 {
					v := lease.ValidUntil()
					if !v.After(time.Now()) || v.Before(last) {
						t.Errorf("ValidUntil %v (previous %v, now %v): want later than now, never earlier", v, last, time.Now())
						return
					}
					last = v
					select {
					case <-lease.Context().Done():
						t.Errorf("lease ended under healthy renewal: %v", lease.Err())
						return
					default:
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
		}
		for range 4 {
			<-done
		}
	})
}
