package dlock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// TestErrorSaysLastAnswer: an acquire whose ctx ends says what the last
// answered attempt said, nothing of an earlier one: busy after a failure
// is ErrNotAcquired alone, a failure after busy is ErrUnavailable alone;
// ctx.Err() is in the chain both times.
func TestErrorSaysLastAnswer(t *testing.T) {
	for _, c := range []struct {
		name         string
		failFirst    bool // else: the attempts after the first fail
		want, unwant error
	}{
		{"busy after a failure", true, dlock.ErrNotAcquired, dlock.ErrUnavailable},
		{"failure after busy", false, dlock.ErrUnavailable, dlock.ErrNotAcquired},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := memdriver.NewStore()
				hold(t, store.Driver(), "k")
				d := newSpy(store)
				n := 0
				d.acquire = func(_ context.Context, _ driver.Request, _ driver.Queued, next func() (driver.Result, error)) (driver.Result, error) {
					n++
					if (n == 1) == c.failFirst {
						return driver.Result{}, fmt.Errorf("test: %w", driver.ErrUnavailable)
					}
					return next()
				}
				l := dlock.New(d, &dlock.Options{LeaseOptions: dlock.LeaseOptions{Retry: dlock.ExponentialBackoff(time.Second, time.Second)}})
				defer l.Close()
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				_, err := l.Acquire(ctx, "k", nil)
				if !errors.Is(err, c.want) || errors.Is(err, c.unwant) || !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Acquire = %v; want %v and context.DeadlineExceeded, not %v", err, c.want, c.unwant)
				}
				if n < 3 {
					t.Errorf("%d attempts; want several", n)
				}
			})
		})
	}
}

// TestLateHandoffNotStale: a handed-off grant that came too late is
// abandoned; when the attempts after it find the key held, the acquire
// ends with ErrNotAcquired, not the late grant's ErrUnavailable.
func TestLateHandoffNotStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		release := hold(t, store.Driver(), "k")
		const ttl = time.Second
		d := newSpy(store)
		var queued, late = make(chan struct{}), false
		d.acquire = func(_ context.Context, req driver.Request, q driver.Queued, next func() (driver.Result, error)) (driver.Result, error) {
			res, err := next()
			if q.Attempt == 1 && !late {
				late = true
				close(queued)
			}
			return res, err
		}
		// Someone else takes the key as soon as the waiter abandons the
		// late grant.
		other := false
		d.release = func(ctx context.Context, _, _ string, next func() error) error {
			err := next()
			if !other {
				other = true
				if res, err := store.Driver().Acquire(ctx, driver.Request{Key: "k", Token: "other", TTL: time.Hour}); err != nil || !res.Acquired {
					t.Errorf("other's Acquire = %+v, %v", res, err)
				}
			}
			return err
		}
		l := dlock.New(d, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: ttl, Retry: dlock.ExponentialBackoff(time.Hour, time.Hour)}})
		defer l.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 3*ttl)
		defer cancel()
		got := goAcquire(ctx, l, "k")
		<-queued
		synctest.Wait()
		// The grant is made a TTL after the queued attempt was sent:
		// past its lease's deadline.
		time.Sleep(ttl)
		release()
		r := <-got
		if !other {
			t.Fatal("the waiter never abandoned the late grant")
		}
		if !errors.Is(r.err, dlock.ErrNotAcquired) || errors.Is(r.err, dlock.ErrUnavailable) || !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("Acquire = %v, %v; want ErrNotAcquired and context.DeadlineExceeded, not the late grant's ErrUnavailable", r.lease, r.err)
		}
	})
}

// TestFailedUndoSaysKeyMayStayHeld: an acquire that returns without a
// lease after an attempt of unknown outcome whose undo failed too says
// that the key may stay held until its TTL, as Acquire's doc promises:
// the caller cannot tell otherwise why the key stays busy.
func TestFailedUndoSaysKeyMayStayHeld(t *testing.T) {
	for name, acquire := range map[string]func(l *dlock.Locker, ctx context.Context) error{
		"TryAcquire": func(l *dlock.Locker, ctx context.Context) error { _, err := l.TryAcquire(ctx, "k", nil); return err },
		"Acquire": func(l *dlock.Locker, ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err := l.Acquire(ctx, "k", nil)
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := memdriver.NewStore()
				d := newSpy(store)
				first := true
				d.acquire = func(_ context.Context, _ driver.Request, _ driver.Queued, next func() (driver.Result, error)) (driver.Result, error) {
					if !first {
						return next()
					}
					first = false
					next() // granted, and the reply lost
					return driver.Result{}, timeout{}
				}
				undos := 0
				d.release = func(context.Context, string, string, func() error) error {
					undos++
					return timeout{} // the undo's outcome is unknown too
				}
				l := dlock.New(d, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Hour, Retry: dlock.ExponentialBackoff(time.Second, time.Second)}})
				defer l.Close()
				err := acquire(l, t.Context())
				if err == nil || !strings.Contains(err.Error(), "may stay held until its TTL") {
					t.Errorf("%s after a failed undo = %v; want it to say the key may stay held until its TTL", name, err)
				}
				if undos == 0 {
					t.Error("no undo was made")
				}
			})
		})
	}
}
