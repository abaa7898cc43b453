package dlock_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/memdriver"
)

// TestBadInput checks that every bad argument is refused with ErrInvalid and
// a message naming the value, before the driver is called.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		l    *dlock.Locker
		key  string
		opts *dlock.LeaseOptions
		want string
	}{
		{"NilDriver", dlock.New(nil, nil), "k", nil, "nil driver"},
		{"EmptyKey", memdriver.New(nil), "", nil, "empty key"},
		{"LongKey", memdriver.New(nil), strings.Repeat("k", 1024+1), nil, "1025 bytes"},
		{"NegativeTTL", memdriver.New(nil), "k", &dlock.LeaseOptions{TTL: -time.Second}, "TTL -1s"},
		{"TinyTTL", memdriver.New(nil), "k", &dlock.LeaseOptions{TTL: time.Microsecond}, "TTL 1µs"},
		{"RenewNotBelowTTL", memdriver.New(nil), "k", &dlock.LeaseOptions{TTL: time.Second, RenewInterval: time.Second}, "RenewInterval 1s"},
		{"DriftNotBelowTTL", memdriver.New(nil), "k", &dlock.LeaseOptions{TTL: time.Second, Drift: 2 * time.Second}, "Drift 2s"},
		{"TTLBelowFloor", memdriver.New(nil), "k", &dlock.LeaseOptions{TTL: 2 * time.Millisecond}, "TTL 2ms is below the minimum 50ms"},
		{"TTLJustBelowFloor", memdriver.New(nil), "k", &dlock.LeaseOptions{TTL: 10 * time.Millisecond}, "TTL 10ms is below the minimum 50ms"},
		{"RenewNoRoomForRoundTrip", memdriver.New(nil), "k", &dlock.LeaseOptions{TTL: time.Second, RenewInterval: 995 * time.Millisecond}, "RenewInterval 995ms (set) leaves no room"},
		{"DerivedRenewNoRoom", memdriver.New(nil), "k", &dlock.LeaseOptions{TTL: time.Second, Drift: 700 * time.Millisecond}, "RenewInterval 333.333333ms (derived as TTL/3)"},
		{"BadCallTTLOverLocker", memdriver.New(&dlock.Options{LeaseOptions: dlock.LeaseOptions{Drift: 500 * time.Millisecond}}), "k", &dlock.LeaseOptions{TTL: 400 * time.Millisecond}, "Drift 500ms is not below TTL 400ms"},
		{"BadLockerOptions", memdriver.New(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: -1}}), "k", nil, "TTL -1ns"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer c.l.Close()
			_, err := c.l.Acquire(ctx, c.key, c.opts)
			if !errors.Is(err, dlock.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Acquire error = %v; want ErrInvalid naming %q", err, c.want)
			}
			_, err = c.l.TryAcquire(ctx, c.key, c.opts)
			if !errors.Is(err, dlock.ErrInvalid) {
				t.Fatalf("TryAcquire error = %v; want ErrInvalid", err)
			}
		})
	}
}

// TestTTLFloorHolds: the shortest TTL accepted is renewed on a healthy
// backend, so the documented minimum is true.
func TestTTLFloorHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := memdriver.New(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: (50 * time.Millisecond)}})
		defer l.Close()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * (50 * time.Millisecond))
		if err := lease.Err(); err != nil {
			t.Fatalf("a lease with TTL %v ended under renewal: %v", (50 * time.Millisecond), err)
		}
		if err := lease.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDoNilFunction(t *testing.T) {
	l := memdriver.New(nil)
	defer l.Close()
	if err := l.Do(context.Background(), "k", nil, nil); !errors.Is(err, dlock.ErrInvalid) {
		t.Fatalf("Do(nil fn) = %v; want ErrInvalid", err)
	}
}

func TestRetryStrategies(t *testing.T) {
	type step struct {
		n    int
		d    time.Duration
		more bool
	}
	cases := []struct {
		name  string
		s     dlock.RetryStrategy
		steps []step
	}{
		{"NoRetry", dlock.LimitRetry(dlock.ExponentialBackoff(time.Millisecond, time.Millisecond), 0), []step{{1, 0, false}}},
		{"Linear", dlock.ExponentialBackoff(5*time.Millisecond, 5*time.Millisecond), []step{{1, 5 * time.Millisecond, true}, {100, 5 * time.Millisecond, true}}},
		{"Exponential", dlock.ExponentialBackoff(time.Millisecond, 10*time.Millisecond), []step{
			{1, time.Millisecond, true}, {2, 2 * time.Millisecond, true}, {4, 8 * time.Millisecond, true}, {5, 10 * time.Millisecond, true}, {1000, 10 * time.Millisecond, true}}},
		{"Limit", dlock.LimitRetry(dlock.ExponentialBackoff(time.Millisecond, time.Millisecond), 2), []step{{1, time.Millisecond, true}, {2, time.Millisecond, true}, {3, 0, false}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, s := range c.steps {
				d, more := c.s.Backoff(s.n)
				if d != s.d || more != s.more {
					t.Errorf("Backoff(%d) = %v, %v; want %v, %v", s.n, d, more, s.d, s.more)
				}
			}
		})
	}
}

// TestCallTTLKeepsExplicitOptions: a per-call TTL rescales what derives from
// the TTL (renewal, drift) but keeps what the Locker set explicitly.
func TestCallTTLKeepsExplicitOptions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := memdriver.New(&dlock.Options{LeaseOptions: dlock.LeaseOptions{Drift: 400 * time.Millisecond}})
		defer l.Close()
		start := time.Now()
		lease, err := l.Acquire(t.Context(), "k", &dlock.LeaseOptions{TTL: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer lease.Release(t.Context())
		if got, want := lease.ValidUntil().Sub(start), 1600*time.Millisecond; got != want {
			t.Errorf("lease valid for %v; want %v: TTL 2s from the call minus the Locker's explicit 400ms drift", got, want)
		}
		time.Sleep(700 * time.Millisecond) // renewal every 2s/3 moves the deadline
		if got, want := lease.ValidUntil().Sub(start), 666*time.Millisecond+1600*time.Millisecond; got < want-time.Millisecond || got > want+time.Millisecond {
			t.Errorf("after one renewal lease valid for %v from start; want about %v", got, want)
		}
	})
}
