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

// cutOff is a backend that stopped answering: once cut, Refresh and
// Release hang until their context ends.
type cutOff struct {
	driver.Locker
	cut chan struct{}
}

func (c *cutOff) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	select {
	case <-c.cut:
		<-ctx.Done()
		return ctx.Err()
	default:
		return c.Locker.Refresh(ctx, key, token, ttl)
	}
}

func (c *cutOff) Release(ctx context.Context, key, token string) error {
	select {
	case <-c.cut:
		<-ctx.Done()
		return ctx.Err()
	default:
		return c.Locker.Release(ctx, key, token)
	}
}

// TestReleaseOfLostLeaseIsBounded: when the backend that caused a loss
// does not answer, releasing the lost lease (as Do and Election do) reports
// the loss within a quarter of the TTL, not after the ReleaseTimeout twice
// over (dlock elect reported a loss 10s late).
func TestReleaseOfLostLeaseIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &cutOff{Locker: memdriver.NewStore().Driver(), cut: make(chan struct{})}
		l := dlock.New(d, &dlock.Options{ReleaseTimeout: 5 * time.Second, LeaseOptions: dlock.LeaseOptions{TTL: 2 * time.Second}})
		defer l.Close()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		close(d.cut)
		<-lease.Context().Done()
		start := time.Now()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 5*time.Second)
		defer cancel()
		err = lease.Release(rctx)
		if !errors.Is(err, dlock.ErrLeaseLost) {
			t.Errorf("Release of a lost lease = %v, want ErrLeaseLost", err)
		}
		if took := time.Since(start); took > 500*time.Millisecond {
			t.Errorf("Release of a lost lease took %v with the backend cut off; want at most TTL/4 = 500ms", took)
		}
	})
}
