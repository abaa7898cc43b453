package dlock_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/leasetime"
	"github.com/dlock-go/dlock/memdriver"
)

// TestSuspendSeenAtFirstLook: the machine is suspended (faked through
// leasetime.Suspend: the monotonic clock, which Linux stops while
// suspended, does not move) for longer than the lease's TTL. The backend's
// expiry ran on meanwhile, so the first look after the resume must report
// the loss, through Err, the lease's context and ValidUntil, although the
// monotonic deadline is still far. A shorter suspend moves ValidUntil
// earlier by as much and keeps the lease, and a lease taken after a
// suspend counts only what follows it. Not parallel: the fake suspend is
// the process's.
func TestSuspendSeenAtFirstLook(t *testing.T) {
	l := memdriver.New(nil)
	defer l.Close()
	ctx := t.Context()
	opts := &dlock.LeaseOptions{TTL: 10 * time.Second}
	long, err := l.Acquire(ctx, "suspend-long", opts)
	if err != nil {
		t.Fatal(err)
	}
	before := long.ValidUntil()

	leasetime.Suspend(3 * time.Second)
	if err := long.Err(); err != nil {
		t.Fatalf("after a 3s suspend with 10s left: Err() = %v, want nil", err)
	}
	if moved := before.Sub(long.ValidUntil()); moved < 3*time.Second-time.Millisecond || moved > 3*time.Second+time.Millisecond {
		t.Errorf("a 3s suspend moved ValidUntil earlier by %v, want 3s", moved)
	}

	leasetime.Suspend(20 * time.Second)
	if err := long.Err(); !errors.Is(err, dlock.ErrLeaseLost) {
		t.Errorf("the first look after a suspend past the TTL: Err() = %v, want ErrLeaseLost", err)
	}
	if long.Context().Err() == nil {
		t.Error("the lease's context is not done after a suspend past the TTL")
	}
	select {
	case <-long.Context().Done():
	default:
		t.Error("Done is not closed after a suspend past the TTL")
	}
	if left := time.Until(long.ValidUntil()); left > 0 {
		t.Errorf("ValidUntil is %v ahead after a suspend past the TTL", left)
	}

	fresh, err := l.Acquire(ctx, "suspend-fresh", opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Err(); err != nil {
		t.Errorf("a lease taken after the suspend: Err() = %v, want nil", err)
	}
	if left := time.Until(fresh.ValidUntil()); left < 9*time.Second {
		t.Errorf("a lease taken after the suspend has %v left, want about 10s", left)
	}
	fresh.Release(ctx)
}
