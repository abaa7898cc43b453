package conformance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
)

var _ driver.FenceFloorer = (*FaultyDriver)(nil)

// CheckFenceFloors implements [driver.FenceFloorer]: it answers for the
// wrapped driver, to which Acquire passes Request.FenceFloor unchanged.
func (f *FaultyDriver) CheckFenceFloors() error { return driver.CheckFenceFloors(f.inner) }

// needFenceFloors skips the case unless d declares that it honours
// Request.FenceFloor ([driver.FenceFloorer]): other drivers ignore it.
func (s *suite) needFenceFloors(d driver.Locker) {
	s.Helper()
	if err := driver.CheckFenceFloors(d); err != nil {
		s.Skipf("%v", err)
	}
}

// capabilityCall is one method of an optional capability, called with
// harmless arguments (a free key, a token that holds nothing).
type capabilityCall struct {
	name string
	call func(ctx context.Context, key string) error
}

// capabilityCalls returns a call for each capability d implements.
func capabilityCalls(d driver.Locker) []capabilityCall {
	var calls []capabilityCall
	if n, ok := d.(driver.Notifier); ok {
		calls = append(calls, capabilityCall{"Subscribe", func(ctx context.Context, key string) error {
			_, cancel, err := n.Subscribe(ctx, key, "")
			if err == nil {
				cancel()
			}
			return err
		}})
	}
	if h, ok := d.(driver.Handoff); ok {
		calls = append(calls, capabilityCall{"SubscribeHandoff", func(ctx context.Context, key string) error {
			_, cancel, err := h.SubscribeHandoff(ctx, key, token())
			if err == nil {
				cancel()
			}
			return err
		}})
	}
	if in, ok := d.(driver.Inspector); ok {
		calls = append(calls, capabilityCall{"Inspect", func(ctx context.Context, key string) error {
			_, _, err := in.Inspect(ctx, key)
			return err
		}})
	}
	if br, ok := d.(driver.BatchRefresher); ok {
		calls = append(calls, capabilityCall{"RefreshBatch", func(ctx context.Context, key string) error {
			errs := br.RefreshBatch(ctx, []driver.RefreshRequest{{Key: key, Token: token(), TTL: longTTL}})
			if len(errs) != 1 {
				return fmt.Errorf("%d results for 1 request", len(errs))
			}
			return errs[0]
		}})
	}
	if sem, ok := d.(driver.Semaphore); ok {
		calls = append(calls, capabilityCall{"ReleaseSlot", func(ctx context.Context, key string) error {
			return sem.ReleaseSlot(ctx, key, token())
		}})
	}
	if fr, ok := d.(driver.FenceRaiser); ok {
		calls = append(calls, capabilityCall{"RaiseFence", func(ctx context.Context, key string) error {
			return fr.RaiseFence(ctx, key, token(), 1)
		}})
	}
	if ff, ok := d.(driver.FenceFloorer); ok {
		calls = append(calls, capabilityCall{"CheckFenceFloors", func(context.Context, string) error {
			return ff.CheckFenceFloors()
		}})
	}
	return calls
}

// unsupportedMeansAbsent checks the rule for wrapping drivers: a
// capability method that answers errors.ErrUnsupported answers so every
// time, for a free key and a held one, and dlock then works as it does
// over a driver without the capability.
func unsupportedMeansAbsent(s *suite) {
	d := s.rawDriver()
	free, held := s.key("free"), s.key("held")
	var absent []string
	for _, c := range capabilityCalls(d) {
		if errors.Is(c.call(s.ctx, free), errors.ErrUnsupported) {
			absent = append(absent, c.name)
		}
	}
	if len(absent) == 0 {
		d.Close()
		s.Skipf("no capability method of %T answers errors.ErrUnsupported", d)
	}
	const ttl = 2 * time.Second
	l := s.locker(d, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: ttl, Retry: dlock.ExponentialBackoff(50*time.Millisecond, 50*time.Millisecond)}})
	other := s.driver()
	a := token()
	s.mustAcquire(other, held, a, longTTL)
	for _, c := range capabilityCalls(d) {
		if slices.Contains(absent, c.name) {
			if err := c.call(s.ctx, held); !errors.Is(err, errors.ErrUnsupported) {
				s.Errorf("%s answered ErrUnsupported for a free key, and %v for a held one: a capability a driver cannot offer must be refused every time", c.name, err)
			}
		}
	}
	if slices.Contains(absent, "Inspect") {
		if _, err := l.Holders(s.ctx, held); !errors.Is(err, errors.ErrUnsupported) {
			s.Errorf("dlock Holders over a driver whose Inspect answers ErrUnsupported = %v; want ErrUnsupported", err)
		}
	}

	// A waiter gets the key soon after the release, woken or polling.
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	got := s.goAcquire(ctx, l, held)
	s.mustRelease(other, held, a)
	var lease *dlock.Lease
	select {
	case r := <-got:
		if r.err != nil {
			s.Fatalf("dlock Acquire after the holder's release = %v; want the key", r.err)
		}
		lease = r.lease
		defer lease.Release(s.ctx)
	case <-time.After(slack):
		cancel()
		if r := <-got; r.lease != nil {
			r.lease.Release(s.ctx)
		}
		s.Fatalf("a dlock waiter did not get the key within %v of its release (capabilities answering ErrUnsupported: %v)", slack, absent)
	}

	// Renewal keeps the lease beyond its TTL, batched or not.
	sleep(s.ctx, ttl*3/2)
	if err := lease.Err(); err != nil {
		s.Errorf("lease with TTL %v lost after %v of renewal: %v (capabilities answering ErrUnsupported: %v)", ttl, ttl*3/2, err, absent)
	}
}
