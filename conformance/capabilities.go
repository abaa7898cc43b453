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

// floorAcquirer is redlock.FloorAcquirer, the fence floors a quorum needs
// of its nodes. Package conformance states its method set rather than
// import redlock, which imports redisdriver and its client: a driver's
// tests need neither. Its tests assert that the two agree.
type floorAcquirer interface {
	AcquireFloor(ctx context.Context, req driver.Request, floor uint64) (driver.Result, error)
}

// AcquireFloor implements redlock.FloorAcquirer, faulted as Acquire, or
// returns an error wrapping [errors.ErrUnsupported] if the wrapped driver
// has no fence floors.
func (f *FaultyDriver) AcquireFloor(ctx context.Context, req driver.Request, floor uint64) (driver.Result, error) {
	fa, ok := f.inner.(floorAcquirer)
	if !ok {
		return driver.Result{}, unsupported(f.inner, "honour fence floors")
	}
	if err := f.enter(ctx, "acquire"); err != nil {
		return driver.Result{}, err
	}
	return fa.AcquireFloor(ctx, req, floor)
}

// acquireFloor makes d's AcquireFloor call of req with floor, and skips
// the case unless d has fence floors: it does not implement
// redlock.FloorAcquirer, or answers errors.ErrUnsupported (a wrapper
// over a driver without them). Only a quorum's nodes need floors.
func (s *suite) acquireFloor(d driver.Locker, req driver.Request, floor uint64) (driver.Result, error) {
	s.Helper()
	fa, ok := d.(floorAcquirer)
	if !ok {
		s.Skipf("%T has no fence floors (redlock.FloorAcquirer)", d)
	}
	res, err := fa.AcquireFloor(s.ctx, req, floor)
	if errors.Is(err, errors.ErrUnsupported) {
		s.Skipf("%v", err)
	}
	return res, err
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
			_, cancel, err := n.Subscribe(ctx, key)
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
		}}, capabilityCall{"AcquireQueued", func(ctx context.Context, key string) error {
			return acquireUndone(ctx, d, key, func(req driver.Request) (driver.Result, error) {
				return h.AcquireQueued(ctx, req, driver.Queued{})
			})
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
	if fa, ok := d.(floorAcquirer); ok {
		calls = append(calls, capabilityCall{"AcquireFloor", func(ctx context.Context, key string) error {
			return acquireUndone(ctx, d, key, func(req driver.Request) (driver.Result, error) {
				return fa.AcquireFloor(ctx, req, 1)
			})
		}})
	}
	return calls
}

// acquireUndone makes an acquire of key with a fresh token through
// acquire, and releases what it granted: a capability's acquire method
// called only to see whether it answers errors.ErrUnsupported.
func acquireUndone(ctx context.Context, d driver.Locker, key string, acquire func(driver.Request) (driver.Result, error)) error {
	tok := token()
	res, err := acquire(driver.Request{Key: key, Token: tok, TTL: longTTL, Owner: "conformance"})
	if err == nil && res.Acquired {
		err = d.Release(ctx, key, tok)
	}
	return err
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
