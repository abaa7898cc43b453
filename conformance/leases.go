package conformance

import (
	"context"
	"errors"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
)

// This file checks what dlock's leases build on the driver: loss before
// expiry, and Close.

func leaseLostBeforeExpiry(s *suite) {
	if s.h.Partitioned == nil {
		s.Skipf("Harness.Partitioned is nil")
	}
	pd, cut := s.h.Partitioned(s.std())
	if pd == nil || cut == nil {
		s.Fatalf("Harness.Partitioned returned a nil driver or cut function")
	}
	// A large drift makes the gap between the local deadline and the
	// backend's expiry wide enough to observe on a loaded machine.
	const ttl, drift = time.Second, 400 * time.Millisecond
	l := s.locker(pd, &dlock.Options{ReleaseTimeout: 200 * time.Millisecond, LeaseOptions: dlock.LeaseOptions{TTL: ttl, Drift: drift}})
	other := s.driver()
	key := s.key("k")

	lease, err := l.Acquire(s.ctx, key, nil)
	if err != nil {
		s.Fatalf("Acquire of a free key = %v", err)
	}
	acquired := time.Now()
	cut()
	select {
	case <-lease.Context().Done():
	case <-time.After(ttl + slack):
		s.Fatalf("lease not lost %v after its client was cut off (TTL %v): renewal that cannot be confirmed must end the lease",
			time.Since(acquired).Round(time.Millisecond), ttl)
	}
	lost := time.Now()
	res := s.attempt(other, key, token(), longTTL)
	if res.Acquired {
		s.Errorf("the key could be taken by another client when the lease's Done closed (%v after Acquire returned, TTL %v): loss must be signalled before the backend frees the key",
			lost.Sub(acquired).Round(time.Millisecond), ttl)
	}
	if in, ok := other.(driver.Inspector); ok && !res.Acquired {
		if h, held, err := in.Inspect(s.ctx, key); err == nil && (!held || h.Fence != lease.Fence()) {
			s.Errorf("Inspect at loss = %+v, held %v; want the lost lease's fence %d still holding", h, held, lease.Fence())
		}
	}
	if err := lease.Err(); !errors.Is(err, dlock.ErrLeaseLost) {
		s.Errorf("lease.Err() after loss = %v; want ErrLeaseLost", err)
	}
	if d := lost.Sub(acquired); d < ttl-drift-ttl/3 {
		s.Errorf("lease lost %v after Acquire; want no earlier than its local deadline, about %v", d, ttl-drift)
	}
}

func closeStops(s *suite) {
	l := s.locker(s.rawDriver(), &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: longTTL}})
	other := s.driver()
	key := s.key("k")
	lease, err := l.Acquire(s.ctx, key, nil)
	if err != nil {
		s.Fatalf("Acquire of a free key = %v", err)
	}
	if err := l.Close(); err != nil {
		s.Errorf("Close = %v", err)
	}
	select {
	case <-lease.Context().Done():
	default:
		s.Fatalf("lease not ended when Close returned")
	}
	if err := lease.Err(); !errors.Is(err, dlock.ErrClosed) {
		s.Errorf("lease.Err() after Close = %v; want ErrClosed", err)
	}
	s.mustAcquire(other, key, token(), longTTL) // Close released it
	if _, err := l.TryAcquire(s.ctx, s.key("other"), nil); !errors.Is(err, dlock.ErrClosed) {
		s.Errorf("TryAcquire after Close = %v; want ErrClosed", err)
	}
	if _, err := l.Acquire(s.ctx, s.key("other"), nil); !errors.Is(err, dlock.ErrClosed) {
		s.Errorf("Acquire after Close = %v; want ErrClosed", err)
	}
	err = l.Do(s.ctx, s.key("other"), nil, func(context.Context, *dlock.Lease) error { return nil })
	if !errors.Is(err, dlock.ErrClosed) {
		s.Errorf("Do after Close = %v; want ErrClosed", err)
	}
}
