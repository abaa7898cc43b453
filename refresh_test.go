package dlock_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// gatedRefresh wraps a driver and holds the first Refresh with TTL ttl
// until open is closed, before it reaches the backend. It hides the inner
// driver's optional capabilities, so renewal goes through Refresh.
type gatedRefresh struct {
	driver.Locker
	ttl     time.Duration
	once    sync.Once
	held    chan struct{} // closed when the held refresh arrived
	open    chan struct{}
	counted atomic.Int64
}

func (g *gatedRefresh) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	g.counted.Add(1)
	if ttl == g.ttl {
		g.once.Do(func() {
			close(g.held)
			<-g.open
		})
	}
	return g.Locker.Refresh(ctx, key, token, ttl)
}

// TestRefreshShorterTTLMovesDeadline: Refresh to a shorter TTL moves the
// local deadline earlier, so the lease is lost before the backend frees
// the key (issue 17 item 2: the deadline stayed 10s out while the key
// expired after 1s and another Locker took it).
func TestRefreshShorterTTLMovesDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		fault := &refreshFault{Locker: store.Driver()}
		l := dlock.New(fault, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 10 * time.Second}})
		defer l.Close()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		sent := time.Now()
		if err := lease.Refresh(t.Context(), time.Second); err != nil {
			t.Fatal(err)
		}
		if got, limit := lease.ValidUntil(), sent.Add(time.Second); got.After(limit) {
			t.Fatalf("after Refresh(1s) lease valid until %v from now; want at most 1s: the backend expires the key then", got.Sub(sent))
		}
		fault.failWith(driver.ErrUnavailable) // renewals stop
		time.Sleep(1100 * time.Millisecond)
		other := store.Locker(nil)
		defer other.Close()
		second, err := other.TryAcquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatalf("another Locker could not take the expired key: %v", err)
		}
		defer second.Release(t.Context())
		if lease.Err() == nil {
			t.Fatalf("two holders: the first lease reports itself valid until %v (now %v) while the second got fence %d",
				lease.ValidUntil().Sub(sent), time.Since(sent), second.Fence())
		}
	})
}

// TestRefreshWaitsForRenewalInFlight: Refresh(1m) while an automatic
// renewal that captured the old 3s TTL is held in flight. Without ordering
// the backend applies 1m, then the held renewal's 3s, while the local
// deadline stays a minute out (issue 17 item 2). Either the key stays held
// or the lease reports its loss.
func TestRefreshWaitsForRenewalInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		g := &gatedRefresh{Locker: store.Driver(), ttl: 3 * time.Second, held: make(chan struct{}), open: make(chan struct{})}
		l := dlock.New(g, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 3 * time.Second}})
		defer l.Close()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		<-g.held // the first renewal (TTL 3s) is in flight
		refreshed := make(chan error, 1)
		go func() { refreshed <- lease.Refresh(t.Context(), time.Minute) }()
		synctest.Wait()
		close(g.open)
		if err := <-refreshed; err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second)
		other := store.Locker(nil)
		defer other.Close()
		second, err := other.TryAcquire(t.Context(), "k", nil)
		if err == nil {
			defer second.Release(t.Context())
			if lease.Err() == nil {
				t.Fatalf("two holders: first lease valid until %v, second acquired with fence %d", lease.ValidUntil(), second.Fence())
			}
		}
		if err := lease.Err(); err != nil {
			t.Fatalf("lease lost: %v; Refresh(1m) confirmed after the renewal should hold the key", err)
		}
		if err := lease.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRefreshNewTTLKeepsExplicitSettings: Refresh with a new TTL keeps an
// explicit Drift as set and an explicit RenewInterval at its ratio to the
// TTL (issue 11 item 5: the drift was reset to the default).
func TestRefreshNewTTLKeepsExplicitSettings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		counter := &refreshFault{Locker: memdriver.NewStore().Driver()}
		l := dlock.New(counter, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 10 * time.Second, Drift: 3 * time.Second, RenewInterval: 2 * time.Second}})
		defer l.Close()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		sent := time.Now()
		if err := lease.Refresh(t.Context(), 20*time.Second); err != nil {
			t.Fatal(err)
		}
		if got, want := lease.ValidUntil().Sub(sent), 17*time.Second; got != want {
			t.Errorf("after Refresh(20s) lease valid for %v; want %v: the explicit 3s drift must stay", got, want)
		}
		before := counter.refreshes.Load()
		time.Sleep(40 * time.Second)
		// RenewInterval 2s of TTL 10s is a fifth: 4s of 20s, 10 renewals
		// in 40s (20 if it stayed 2s, 6 at the default TTL/3).
		if n := counter.refreshes.Load() - before; n < 9 || n > 11 {
			t.Errorf("%d renewals in 40s after Refresh(20s); want about 10, one every 4s", n)
		}
		if err := lease.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRefreshInvalidTTL: a new TTL that the lease's explicit settings make
// hopeless is refused before any I/O.
func TestRefreshInvalidTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		counter := &refreshFault{Locker: memdriver.NewStore().Driver()}
		l := dlock.New(counter, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 10 * time.Second, Drift: 3 * time.Second}})
		defer l.Close()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer lease.Release(t.Context())
		for _, ttl := range []time.Duration{-time.Second, time.Millisecond, 2 * time.Second} {
			if err := lease.Refresh(t.Context(), ttl); !errors.Is(err, dlock.ErrInvalid) {
				t.Errorf("Refresh(%v) = %v; want ErrInvalid", ttl, err)
			}
		}
		if n := counter.refreshes.Load(); n != 0 {
			t.Errorf("%d refreshes sent for invalid TTLs; want none", n)
		}
		if err := lease.Err(); err != nil {
			t.Errorf("lease ended by refused refreshes: %v", err)
		}
	})
}

// lateRefresh times out on the first Refresh with TTL ttl without applying
// it, and applies it just after the next Refresh, as a request delayed in
// the network behind a later one is. It hides batched refresh.
type lateRefresh struct {
	driver.Locker
	ttl          time.Duration
	mu           sync.Mutex
	key, token   string // the delayed refresh
	held, landed bool
}

func (d *lateRefresh) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ttl == d.ttl && !d.held {
		d.key, d.token, d.held = key, token, true
		return timeoutError{}
	}
	err := d.Locker.Refresh(ctx, key, token, ttl)
	if d.held && !d.landed {
		d.landed = true
		d.Locker.Refresh(ctx, d.key, d.token, d.ttl)
	}
	return err
}

// TestLateShorterRefresh: a Refresh to a shorter TTL whose outcome is
// unknown may still reach the backend after later refreshes; a later
// Refresh to a longer TTL must not leave the local deadline beyond the
// expiry the delayed one sets. (It did: another client took the key 1s
// later while the lease reported itself valid for 9s more.)
func TestLateShorterRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		l := dlock.New(&lateRefresh{Locker: store.Driver(), ttl: time.Second}, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 10 * time.Second}})
		defer l.Close()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer lease.Release(t.Context())
		if err := lease.Refresh(t.Context(), time.Second); err == nil {
			t.Fatal("Refresh(1s) succeeded; want the driver's timeout")
		}
		if err := lease.Refresh(t.Context(), 10*time.Second); err != nil {
			t.Fatal(err) // the delayed Refresh(1s) lands just after it
		}
		time.Sleep(1500 * time.Millisecond)
		other := store.Locker(nil)
		defer other.Close()
		if second, err := other.TryAcquire(t.Context(), "k", nil); err == nil {
			defer second.Release(t.Context())
			if lease.Err() == nil {
				t.Fatalf("two holders: another client got fence %d while the first lease reports itself valid until %v from now",
					second.Fence(), time.Until(lease.ValidUntil()))
			}
		}
	})
}

// lateAcquire times out on the first Acquire without applying it, and
// applies it just after the first Refresh, as a request delayed in the
// network behind later ones is. It hides optional capabilities.
type lateAcquire struct {
	driver.Locker
	mu     sync.Mutex
	req    *driver.Request // the delayed acquire
	landed bool
}

func (d *lateAcquire) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.req == nil {
		d.req = &req
		return driver.Result{}, timeoutError{}
	}
	return d.Locker.Acquire(ctx, req)
}

func (d *lateAcquire) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	err := d.Locker.Refresh(ctx, key, token, ttl)
	if !d.landed {
		d.landed = true
		d.Locker.Acquire(ctx, *d.req)
	}
	return err
}

// TestLateAcquireAfterLongerRefresh: an acquire attempt whose outcome is
// unknown may reach the backend after the lease a later attempt (same
// token) returned was refreshed to a longer TTL, and cut the key's expiry
// back to the acquire's TTL; the lease must not report itself valid past
// that.
func TestLateAcquireAfterLongerRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		l := dlock.New(&lateAcquire{Locker: store.Driver()}, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second, Retry: dlock.ExponentialBackoff(10*time.Millisecond, 10*time.Millisecond)}})
		defer l.Close()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer lease.Release(t.Context())
		if err := lease.Refresh(t.Context(), 10*time.Second); err != nil {
			t.Fatal(err) // the delayed acquire (TTL 1s) lands just after it
		}
		time.Sleep(1500 * time.Millisecond)
		other := store.Locker(nil)
		defer other.Close()
		if second, err := other.TryAcquire(t.Context(), "k", nil); err == nil {
			defer second.Release(t.Context())
			if lease.Err() == nil {
				t.Fatalf("two holders: another client got fence %d while the first lease reports itself valid until %v from now",
					second.Fence(), time.Until(lease.ValidUntil()))
			}
		}
	})
}

// TestLateRenewalAfterLongerRefresh: an automatic renewal whose outcome is
// unknown may reach the backend after a later Refresh to a longer TTL and
// set the key's expiry back to the old TTL; the lease must not report
// itself valid past that.
func TestLateRenewalAfterLongerRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		l := dlock.New(&lateRefresh{Locker: store.Driver(), ttl: time.Second}, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
		defer l.Close()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer lease.Release(t.Context())
		time.Sleep(340 * time.Millisecond) // the first renewal (at 1/3 TTL) timed out; its retry is not due yet
		if err := lease.Refresh(t.Context(), 10*time.Second); err != nil {
			t.Fatal(err) // the delayed renewal (TTL 1s) lands just after it
		}
		time.Sleep(1500 * time.Millisecond)
		other := store.Locker(nil)
		defer other.Close()
		if second, err := other.TryAcquire(t.Context(), "k", nil); err == nil {
			defer second.Release(t.Context())
			if lease.Err() == nil {
				t.Fatalf("two holders: another client got fence %d while the first lease reports itself valid until %v from now",
					second.Fence(), time.Until(lease.ValidUntil()))
			}
		}
	})
}
