package dlock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// TestInvalidLeaseOptionsNoIO: every call refuses invalid LeaseOptions
// with ErrInvalid before it makes a driver call.
func TestInvalidLeaseOptionsNoIO(t *testing.T) {
	bad := map[string]*dlock.LeaseOptions{
		"negative TTL":        {TTL: -time.Second},
		"TTL below 50ms":      {TTL: 10 * time.Millisecond},
		"negative Drift":      {Drift: -time.Millisecond},
		"Drift above TTL":     {TTL: time.Second, Drift: 2 * time.Second},
		"RenewInterval = TTL": {TTL: time.Second, RenewInterval: time.Second},
		"negative Limit":      {Limit: -1},
		"Limit above max":     {Limit: driver.MaxLimit + 1},
	}
	d := newSpy(memdriver.NewStore())
	l := dlock.New(d, nil)
	defer l.Close()
	ctx := t.Context()
	noop := func(context.Context, *dlock.Lease) error { return nil }
	for name, o := range bad {
		calls := map[string]func() error{
			"Acquire":    func() error { _, err := l.Acquire(ctx, "k", o); return err },
			"TryAcquire": func() error { _, err := l.TryAcquire(ctx, "k", o); return err },
			"Do":         func() error { return l.Do(ctx, "k", o, noop) },
			"Election":   func() error { return dlock.NewElection(l, "k", &dlock.ElectionOptions{Lease: o}).Run(ctx, noop) },
		}
		for call, f := range calls {
			if err := f(); !errors.Is(err, dlock.ErrInvalid) {
				t.Errorf("%s with %s = %v; want ErrInvalid", call, name, err)
			}
		}
	}
	if n := d.calls.Load(); n != 0 {
		t.Errorf("%d driver calls for invalid options; want none", n)
	}
}

// counted is a driver without semaphores that counts its calls.
type counted struct {
	driver.Locker
	calls int
}

func (c *counted) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	c.calls++
	return c.Locker.Acquire(ctx, req)
}

func (c *counted) Release(ctx context.Context, key, token string) error {
	c.calls++
	return c.Locker.Release(ctx, key, token)
}

// TestSemaphoreUnsupportedNoIO: a Limit above 1 over a driver without
// semaphores is refused with errors.ErrUnsupported before any driver
// call, by every call that takes a lease.
func TestSemaphoreUnsupportedNoIO(t *testing.T) {
	d := &counted{Locker: memdriver.NewStore().Driver()}
	l := dlock.New(d, nil)
	defer l.Close()
	ctx := t.Context()
	o := &dlock.LeaseOptions{Limit: 2}
	noop := func(context.Context, *dlock.Lease) error { return nil }
	for call, f := range map[string]func() error{
		"Acquire":    func() error { _, err := l.Acquire(ctx, "k", o); return err },
		"TryAcquire": func() error { _, err := l.TryAcquire(ctx, "k", o); return err },
		"Do":         func() error { return l.Do(ctx, "k", o, noop) },
		"Election":   func() error { return dlock.NewElection(l, "k", &dlock.ElectionOptions{Lease: o}).Run(ctx, noop) },
	} {
		if err := f(); !errors.Is(err, errors.ErrUnsupported) || errors.Is(err, dlock.ErrNotAcquired) {
			t.Errorf("%s with Limit 2 over a driver without semaphores = %v; want errors.ErrUnsupported", call, err)
		}
	}
	if d.calls != 0 {
		t.Errorf("%d driver calls; want none", d.calls)
	}
}

// TestNoRetryNoSubscription: an Acquire whose retry strategy allows no
// retry makes its one attempt and gives up: it does not subscribe to
// releases it will not wait for, nor make the attempt that follows a new
// subscription.
func TestNoRetryNoSubscription(t *testing.T) {
	store := memdriver.NewStore()
	hold(t, store.Driver(), "k")
	d := newSpy(store)
	var attempts, subs int
	d.acquire = func(_ context.Context, _ driver.Request, _ driver.Queued, next func() (driver.Result, error)) (driver.Result, error) {
		attempts++
		return next()
	}
	d.subscribe = func(context.Context, string, string) error { subs++; return nil }
	l := dlock.New(d, nil)
	defer l.Close()
	_, err := l.Acquire(t.Context(), "k", &dlock.LeaseOptions{Retry: dlock.LimitRetry(dlock.ExponentialBackoff(time.Second, time.Second), 0)})
	if !errors.Is(err, dlock.ErrNotAcquired) {
		t.Errorf("Acquire = %v; want ErrNotAcquired", err)
	}
	if attempts != 1 || subs != 0 {
		t.Errorf("%d attempts and %d subscriptions; want 1 and none (no retry, no wait)", attempts, subs)
	}
}

// TestLockerLimitAboveMaxInvalid: a Locker whose default Limit is above
// driver.MaxLimit has invalid options: New's promise is that every method
// then returns ErrInvalid, not only the acquires.
func TestLockerLimitAboveMaxInvalid(t *testing.T) {
	d := newSpy(memdriver.NewStore())
	l := dlock.New(d, &dlock.Options{LeaseOptions: dlock.LeaseOptions{Limit: driver.MaxLimit + 1}})
	defer l.Close()
	if _, err := l.Holders(t.Context(), "k"); !errors.Is(err, dlock.ErrInvalid) {
		t.Errorf("Holders of a Locker with Limit %d = %v; want ErrInvalid", driver.MaxLimit+1, err)
	}
	if _, err := l.TryAcquire(t.Context(), "k", nil); !errors.Is(err, dlock.ErrInvalid) {
		t.Errorf("TryAcquire of a Locker with Limit %d = %v; want ErrInvalid", driver.MaxLimit+1, err)
	}
	if n := d.calls.Load(); n != 0 {
		t.Errorf("%d driver calls; want none", n)
	}
}
