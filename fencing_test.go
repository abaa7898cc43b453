package dlock_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// fenceSpy records the NoFence flag of every Acquire it forwards.
type fenceSpy struct {
	driver.Locker
	noFence []bool
}

func (s *fenceSpy) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	s.noFence = append(s.noFence, req.NoFence)
	return s.Locker.Acquire(ctx, req)
}

// TestDisableFencing: with DisableFencing, on the Locker or on one call,
// a lock lease's Fence is 0, whatever the driver returns (memdriver keeps
// its counter), and the driver is told (Request.NoFence) so that it may
// skip the fence work; by default leases carry fences and drivers are not
// told.
func TestDisableFencing(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name          string
		locker        *dlock.Options
		call          *dlock.LeaseOptions
		wantNoFence   bool
		wantFenceZero bool
	}{
		{"Default", nil, nil, false, false},
		{"Locker", &dlock.Options{LeaseOptions: dlock.LeaseOptions{DisableFencing: true}}, nil, true, true},
		{"Call", nil, &dlock.LeaseOptions{DisableFencing: true}, true, true},
		{"CallCannotTurnOn", &dlock.Options{LeaseOptions: dlock.LeaseOptions{DisableFencing: true}}, &dlock.LeaseOptions{Owner: "o"}, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			spy := &fenceSpy{Locker: memdriver.NewStore().Driver()}
			l := dlock.New(spy, c.locker)
			defer l.Close()
			for i := range 2 { // the second grant would have fence 2
				lease, err := l.TryAcquire(ctx, "k", c.call)
				if err != nil {
					t.Fatal(err)
				}
				if got := lease.Fence(); (got == 0) != c.wantFenceZero {
					t.Errorf("grant %d: Fence = %d; want zero: %v", i+1, got, c.wantFenceZero)
				}
				if err := lease.Release(ctx); err != nil {
					t.Fatal(err)
				}
			}
			for i, nf := range spy.noFence {
				if nf != c.wantNoFence {
					t.Errorf("attempt %d: Request.NoFence = %v; want %v", i+1, nf, c.wantNoFence)
				}
			}
		})
	}
}

// TestDisableFencingKeepsSlotFences: semaphore slots keep their fences
// with DisableFencing (their backends keep one per key anyway), and the
// slot driver is not told to skip them.
func TestDisableFencingKeepsSlotFences(t *testing.T) {
	ctx := context.Background()
	l := memdriver.New(&dlock.Options{LeaseOptions: dlock.LeaseOptions{DisableFencing: true}})
	defer l.Close()
	var last uint64
	for i := range 2 {
		lease, err := l.TryAcquire(ctx, "s", &dlock.LeaseOptions{Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		if lease.Fence() <= last {
			t.Errorf("slot %d: Fence = %d; want above %d: slots keep their fences", i+1, lease.Fence(), last)
		}
		last = lease.Fence()
		defer lease.Release(ctx)
	}
}

// TestOpenFencingParam: fencing=false in a URL sets DisableFencing, the
// driver sees it (a quorum driver reads the same setting), and a value
// that is not a boolean is refused before any I/O.
func TestOpenFencingParam(t *testing.T) {
	ctx := context.Background()
	l, err := dlock.Open(ctx, "mem://fencing-param?fencing=false", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lease, err := l.TryAcquire(ctx, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if lease.Fence() != 0 {
		t.Errorf("Fence = %d with fencing=false; want 0", lease.Fence())
	}
	lease.Release(ctx)

	on, err := dlock.Open(ctx, "mem://fencing-param?fencing=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer on.Close()
	if fenceOf(t, on) == 0 {
		t.Error("Fence = 0 after fencing=true")
	}

	// The spellings of the drivers' boolean parameters, not strconv's.
	for _, v := range []string{"maybe", "False", "t"} {
		_, err = dlock.Open(ctx, "mem://fencing-param?fencing="+v, nil)
		if !errors.Is(err, dlock.ErrInvalid) || err == nil || !strings.Contains(err.Error(), `fencing="`+v+`"`) {
			t.Errorf("Open with fencing=%s: %v; want ErrInvalid naming the parameter", v, err)
		}
	}
	zero, err := dlock.Open(ctx, "mem://fencing-param?fencing=0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zero.Close()
	if f := fenceOf(t, zero); f != 0 {
		t.Errorf("Fence = %d after fencing=0; want 0", f)
	}

	for _, c := range []struct {
		url  string
		opts *dlock.Options
		want string
	}{
		{"urlseen://x?fencing=false", nil, "false"},
		{"urlseen://x", &dlock.Options{LeaseOptions: dlock.LeaseOptions{DisableFencing: true}}, "false"},
		{"urlseen://x?fencing=true", nil, ""}, // the default: not passed on
	} {
		l, err := dlock.Open(ctx, c.url, c.opts)
		if err != nil {
			t.Fatal(err)
		}
		if got := (<-seen).Query().Get("fencing"); got != c.want {
			t.Errorf("%s: driver got fencing=%q; want %q", c.url, got, c.want)
		}
		l.Close()
	}
}

// fenceOf returns the fence of a lease of a fresh key of l.
func fenceOf(t *testing.T, l *dlock.Locker) uint64 {
	t.Helper()
	lease, err := l.TryAcquire(t.Context(), "fence-of/"+t.Name(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(t.Context())
	return lease.Fence()
}
