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
