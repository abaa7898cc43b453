package dlock_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// gatedLeaseCalls holds every Release and Refresh before it reaches the
// backend until open is closed, and records whether the driver was closed
// before a held call went on.
type gatedLeaseCalls struct {
	driver.Locker
	entered  chan struct{} // closed by the first held call
	open     chan struct{}
	closed   atomic.Bool
	cutShort atomic.Bool // a held call went on after Close
}

func (g *gatedLeaseCalls) hold() {
	select {
	case <-g.entered:
	default:
		close(g.entered)
	}
	<-g.open
	if g.closed.Load() {
		g.cutShort.Store(true)
	}
}

func (g *gatedLeaseCalls) Release(ctx context.Context, key, token string) error {
	g.hold()
	return g.Locker.Release(ctx, key, token)
}

func (g *gatedLeaseCalls) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	g.hold()
	return g.Locker.Refresh(ctx, key, token, ttl)
}

func (g *gatedLeaseCalls) Close() error {
	g.closed.Store(true)
	return g.Locker.Close()
}

// TestCloseAwaitsLeaseCalls: Close waits for a Lease.Release or
// Lease.Refresh in flight before it closes the driver. A Release leaves
// the renewer before it calls the driver, so Close, which waited only for
// Acquire calls, closed the driver under it: the only lease was released
// and its Locker closed, yet the key stayed held.
func TestCloseAwaitsLeaseCalls(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func(ctx context.Context, le *dlock.Lease) error
	}{
		{"Release", func(ctx context.Context, le *dlock.Lease) error { return le.Release(ctx) }},
		{"Refresh", func(ctx context.Context, le *dlock.Lease) error { return le.Refresh(ctx, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := memdriver.NewStore()
				g := &gatedLeaseCalls{Locker: store.Driver(), entered: make(chan struct{}), open: make(chan struct{})}
				l := dlock.New(g, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Hour}})
				le, err := l.TryAcquire(t.Context(), "k", nil)
				if err != nil {
					t.Fatal(err)
				}
				called := make(chan error)
				go func() { called <- tc.call(t.Context(), le) }()
				<-g.entered
				closed := make(chan error)
				go func() { closed <- l.Close() }()
				synctest.Wait() // Close waits for the call in flight
				close(g.open)
				err = <-called
				if cerr := <-closed; cerr != nil && !errors.Is(cerr, dlock.ErrNotHeld) {
					t.Errorf("Close = %v", cerr)
				}
				if g.cutShort.Load() {
					t.Errorf("%s in flight went on after Close closed the driver (returned %v); Close must wait for it", tc.name, err)
				}
				mustBeFree(t, store, "k", "the lease was released and its Locker closed")
			})
		})
	}
}
