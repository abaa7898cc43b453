package memdriver_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/conformance"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
	"github.com/dlock-go/dlock/redlock"
)

// newClient returns a client of s that is closed when the test ends.
func newClient(t *testing.T, s *memdriver.Store) driver.Locker {
	t.Helper()
	d := s.Driver()
	t.Cleanup(func() { d.Close() })
	return d
}

func mustAcquire(t *testing.T, d driver.Locker, key, token string, ttl time.Duration) uint64 {
	t.Helper()
	res, err := d.Acquire(t.Context(), driver.Request{Key: key, Token: token, TTL: ttl, Owner: "o-" + token})
	if err != nil || !res.Acquired {
		t.Fatalf("Acquire(%q, %q) = %+v, %v; want acquired", key, token, res, err)
	}
	return res.Fence
}

func TestExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newClient(t, memdriver.NewStore())
		ctx := t.Context()
		mustAcquire(t, d, "k", "a", 10*time.Second)

		time.Sleep(10*time.Second - time.Millisecond)
		res, err := d.Acquire(ctx, driver.Request{Key: "k", Token: "b", TTL: time.Second})
		if err != nil || res.Acquired || res.HolderTTL != time.Millisecond {
			t.Fatalf("1ms before expiry: Acquire = %+v, %v; want busy with HolderTTL 1ms", res, err)
		}
		if h, ok, err := d.(driver.Inspector).Inspect(ctx, "k"); !ok || err != nil || h.TTL != time.Millisecond || h.Owner != "o-a" {
			t.Fatalf("1ms before expiry: Inspect = %+v, %v, %v; want owner o-a, TTL 1ms", h, ok, err)
		}

		time.Sleep(time.Millisecond)
		if _, ok, err := d.(driver.Inspector).Inspect(ctx, "k"); ok || err != nil {
			t.Fatalf("at expiry: Inspect = held, %v; want free", err)
		}
		if err := d.Refresh(ctx, "k", "a", time.Second); !errors.Is(err, driver.ErrNotHeld) {
			t.Fatalf("Refresh after expiry = %v; want ErrNotHeld", err)
		}
		if err := d.Release(ctx, "k", "a"); !errors.Is(err, driver.ErrNotHeld) {
			t.Fatalf("Release after expiry = %v; want ErrNotHeld", err)
		}
		mustAcquire(t, d, "k", "b", time.Second)
	})
}

func TestRefreshAndSameToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newClient(t, memdriver.NewStore())
		ctx := t.Context()
		f := mustAcquire(t, d, "k", "a", time.Second)
		time.Sleep(900 * time.Millisecond)
		if err := d.Refresh(ctx, "k", "a", time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(900 * time.Millisecond)
		if g := mustAcquire(t, d, "k", "a", time.Second); g != f {
			t.Fatalf("same-token re-acquire: fence %d, want %d", g, f)
		}
		time.Sleep(900 * time.Millisecond)
		h, ok, _ := d.(driver.Inspector).Inspect(ctx, "k")
		if !ok || h.TTL != 100*time.Millisecond || h.Fence != f {
			t.Fatalf("Inspect = %+v, %v; want fence %d, TTL 100ms", h, ok, f)
		}
	})
}

func TestFences(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memdriver.NewStore()
		d1, d2 := newClient(t, s), newClient(t, s)
		ctx := t.Context()

		f1 := mustAcquire(t, d1, "k", "a", time.Second)
		if f := mustAcquire(t, d1, "other", "a", time.Second); f != 1 {
			t.Errorf("first fence of another key = %d, want 1: fences are per key", f)
		}
		if err := d1.Release(ctx, "k", "a"); err != nil {
			t.Fatal(err)
		}
		f2 := mustAcquire(t, d2, "k", "b", time.Second)
		time.Sleep(time.Second) // expires
		f3 := mustAcquire(t, d1, "k", "c", time.Second)
		if !(f1 < f2 && f2 < f3) {
			t.Fatalf("fences %d, %d, %d do not increase across release and expiry", f1, f2, f3)
		}

		fr := d1.(driver.FenceRaiser)
		if err := fr.RaiseFence(ctx, "k", "b", 100); !errors.Is(err, driver.ErrNotHeld) {
			t.Fatalf("RaiseFence with a stale token = %v; want ErrNotHeld", err)
		}
		if err := fr.RaiseFence(ctx, "k", "c", 100); err != nil {
			t.Fatal(err)
		}
		if f := mustAcquire(t, d1, "k", "c", time.Second); f != 100 {
			t.Fatalf("holder's fence after RaiseFence(100) = %d, want 100", f)
		}
		if err := d1.Release(ctx, "k", "c"); err != nil {
			t.Fatal(err)
		}
		if f := mustAcquire(t, d2, "k", "d", time.Second); f != 101 {
			t.Fatalf("fence after RaiseFence(100) = %d, want 101", f)
		}
	})
}

func TestRefreshBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newClient(t, memdriver.NewStore())
		mustAcquire(t, d, "a", "ta", time.Second)
		mustAcquire(t, d, "b", "tb", time.Second)
		errs := d.(driver.BatchRefresher).RefreshBatch(t.Context(), []driver.RefreshRequest{
			{Key: "a", Token: "ta", TTL: time.Minute},
			{Key: "b", Token: "wrong", TTL: time.Minute},
			{Key: "c", Token: "tc", TTL: time.Minute},
		})
		if len(errs) != 3 || errs[0] != nil || !errors.Is(errs[1], driver.ErrNotHeld) || !errors.Is(errs[2], driver.ErrNotHeld) {
			t.Fatalf("RefreshBatch = %v; want [nil, ErrNotHeld, ErrNotHeld]", errs)
		}
		time.Sleep(2 * time.Second)
		if _, ok, _ := d.(driver.Inspector).Inspect(t.Context(), "a"); !ok {
			t.Error("a expired though refreshed for a minute")
		}
		if _, ok, _ := d.(driver.Inspector).Inspect(t.Context(), "b"); ok {
			t.Error("b was refreshed by a wrong token")
		}
	})
}

func TestSubscribe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memdriver.NewStore()
		d1, d2 := newClient(t, s), s.Driver()
		ctx := t.Context()
		ch, cancel, err := d2.(driver.Notifier).Subscribe(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
		mustAcquire(t, d1, "k", "a", time.Second)
		if err := d1.Release(ctx, "k", "wrong"); err == nil {
			t.Fatal("Release with a wrong token succeeded")
		}
		synctest.Wait()
		select {
		case <-ch:
			t.Fatal("woken by a failed release")
		default:
		}
		if err := d1.Release(ctx, "k", "a"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
		default:
			t.Fatal("not woken by release")
		}

		// A closed client's subscriptions end, and its calls fail.
		if err := d2.Close(); err != nil {
			t.Fatal(err)
		}
		mustAcquire(t, d1, "k", "b", time.Second)
		d1.Release(ctx, "k", "b")
		select {
		case <-ch:
			t.Fatal("closed client's subscription woken")
		default:
		}
		if _, err := d2.Acquire(ctx, driver.Request{Key: "x", Token: "t", TTL: time.Second}); !errors.Is(err, dlock.ErrClosed) {
			t.Fatalf("Acquire on a closed client = %v; want ErrClosed", err)
		}
		if err := d2.Close(); err != nil {
			t.Fatalf("second Close = %v", err)
		}
		// Other clients are unaffected.
		mustAcquire(t, d1, "k", "c", time.Second)
	})
}

func TestCancelledContext(t *testing.T) {
	d := newClient(t, memdriver.NewStore())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := d.Acquire(ctx, driver.Request{Key: "k", Token: "a", TTL: time.Second}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with a cancelled context = %v; want context.Canceled", err)
	}
	mustAcquire(t, d, "k", "b", time.Second) // the cancelled call did nothing
}

// TestRenewal checks the root's renewal on fake time: a lease lives as long
// as renewals succeed.
func TestRenewal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memdriver.NewStore()
		l := s.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 10 * time.Second}})
		defer l.Close()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Minute)
		if err := lease.Err(); err != nil {
			t.Fatalf("lease lost after 30 minutes of renewal: %v", err)
		}
		h, ok, err := soleHolder(l.Holders(t.Context(), "k"))
		if !ok || err != nil || h.Fence != lease.Fence() || h.TTL <= 0 || h.TTL > 10*time.Second {
			t.Fatalf("Holder = %+v, %v, %v; want fence %d and TTL in (0, 10s]", h, ok, err, lease.Fence())
		}
		if err := lease.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := soleHolder(l.Holders(t.Context(), "k")); ok {
			t.Fatal("key held after Release")
		}
	})
}

// TestLossBeforeExpiry checks, on fake time, that a lease whose renewals
// fail is lost before the store frees the key.
func TestLossBeforeExpiry(t *testing.T) {
	for _, fault := range []struct {
		name  string
		apply func(*conformance.FaultyDriver)
	}{
		{"Refuse", (*conformance.FaultyDriver).Refuse},
		{"Partition", (*conformance.FaultyDriver).Partition},
	} {
		t.Run(fault.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := memdriver.NewStore()
				f := conformance.Faulty(s.Driver())
				l := dlock.New(f, &dlock.Options{ReleaseTimeout: time.Second, LeaseOptions: dlock.LeaseOptions{TTL: 10 * time.Second}})
				defer l.Close()
				other := newClient(t, s)
				lease, err := l.Acquire(t.Context(), "k", nil)
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Minute)
				fault.apply(f)
				cut := time.Now()
				<-lease.Context().Done()
				if !errors.Is(lease.Err(), dlock.ErrLeaseLost) {
					t.Fatalf("lease.Err() = %v; want ErrLeaseLost", lease.Err())
				}
				h, ok, err := other.(driver.Inspector).Inspect(t.Context(), "k")
				if !ok || err != nil {
					t.Fatalf("when the lease was lost (%v after the fault) the store had freed the key already", time.Since(cut))
				}
				// The local deadline is the drift (TTL/100+2ms by
				// default) before the store's expiry: loss comes then,
				// not much earlier.
				if h.TTL > time.Second {
					t.Errorf("lease lost with %v left at the store; want about the drift, 102ms", h.TTL)
				}
			})
		})
	}
}

// TestLostAtOnce checks that ErrNotHeld from a renewal ends the lease at
// that renewal, not at the deadline.
func TestLostAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memdriver.NewStore()
		l := s.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 30 * time.Second}})
		defer l.Close()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		// Someone who knows the token frees the key behind the lease's back.
		if err := newClient(t, s).Release(t.Context(), "k", lease.Token()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		<-lease.Context().Done()
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("lease lost %v after the key was freed; want at the next renewal, within 10s", d)
		}
		if err := lease.Err(); !errors.Is(err, dlock.ErrLeaseLost) || !errors.Is(err, dlock.ErrNotHeld) {
			t.Errorf("lease.Err() = %v; want ErrLeaseLost and ErrNotHeld", err)
		}
	})
}

func TestOpen(t *testing.T) {
	ctx := t.Context()
	a, err := dlock.Open(ctx, "mem://TestOpen", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := dlock.Open(ctx, "mem://TestOpen?ttl=5s", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	private, err := dlock.Open(ctx, "mem://", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer private.Close()

	lease, err := a.TryAcquire(ctx, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(ctx)
	if _, err := b.TryAcquire(ctx, "k", nil); !errors.Is(err, dlock.ErrNotAcquired) {
		t.Errorf("second Open of mem://TestOpen: TryAcquire = %v; want ErrNotAcquired (same store)", err)
	}
	l, err := private.TryAcquire(ctx, "k", nil)
	if err != nil {
		t.Errorf("mem://: TryAcquire = %v; want a store of its own", err)
	} else {
		l.Release(ctx)
	}

	for _, bad := range []string{"mem://x?bogus=1", "mem://x/path", "mem://user:secret@x"} {
		l, err := dlock.Open(ctx, bad, nil)
		if !errors.Is(err, dlock.ErrInvalid) {
			t.Errorf("Open(%q) = %v; want ErrInvalid", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%q) error shows the password: %v", bad, err)
		}
		if l != nil {
			l.Close()
		}
	}
}

// TestWaiterWakeup checks, on fake time, when a dlock waiter gets a key: at
// once on release, and exactly at expiry when the holder vanishes, though
// its retry strategy alone would wait an hour.
func TestWaiterWakeup(t *testing.T) {
	for _, tt := range []struct {
		name    string
		release bool
		want    time.Duration
	}{
		{"Release", true, time.Second},
		{"Expiry", false, 10 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := memdriver.NewStore()
				holder := newClient(t, s)
				l := s.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{Retry: dlock.ExponentialBackoff(time.Hour, time.Hour)}})
				defer l.Close()
				mustAcquire(t, holder, "k", "a", 10*time.Second)
				start := time.Now()
				if tt.release {
					go func() {
						time.Sleep(time.Second)
						holder.Release(context.Background(), "k", "a")
					}()
				}
				lease, err := l.Acquire(t.Context(), "k", nil)
				if err != nil {
					t.Fatal(err)
				}
				defer lease.Release(t.Context())
				if d := time.Since(start); d != tt.want {
					t.Errorf("waiter got the key after %v; want %v", d, tt.want)
				}
			})
		})
	}
}

// TestEmptyTokenRefused: a store marks a free key with an empty token, so
// an Acquire without one must be refused, not granted unreleasably.
func TestEmptyTokenRefused(t *testing.T) {
	d := newClient(t, memdriver.NewStore())
	res, err := d.Acquire(t.Context(), driver.Request{Key: "k", TTL: time.Minute})
	if !errors.Is(err, dlock.ErrInvalid) || res.Acquired {
		t.Fatalf("Acquire with an empty token = %+v, %v; want ErrInvalid", res, err)
	}
	mustAcquire(t, d, "k", "a", time.Minute) // and the key stayed free
}

// TestBubbleBorder: a store used across a testing/synctest bubble's border
// fails with an error that says so, instead of hanging (a Locker made
// outside waits on timers of the real clock) or mixing clocks.
func TestBubbleBorder(t *testing.T) {
	check := func(t *testing.T, l *dlock.Locker) {
		t.Helper()
		_, err := l.Acquire(t.Context(), "k", nil)
		if !errors.Is(err, dlock.ErrInvalid) || !strings.Contains(err.Error(), "synctest") {
			t.Errorf("Acquire across the bubble's border = %v; want ErrInvalid saying what to do", err)
		}
	}
	t.Run("MadeOutsideUsedInside", func(t *testing.T) {
		l := memdriver.New(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
		defer l.Close()
		synctest.Test(t, func(t *testing.T) { check(t, l) })
		if _, err := l.TryAcquire(t.Context(), "k", nil); err != nil {
			t.Errorf("TryAcquire outside, where the store was made = %v", err)
		}
	})
	t.Run("MadeInsideUsedOutside", func(t *testing.T) {
		var l *dlock.Locker
		synctest.Test(t, func(t *testing.T) {
			l = memdriver.New(nil)
			if _, held, err := soleHolder(l.Holders(t.Context(), "k")); err != nil || held {
				t.Fatalf("Holder inside the bubble = %v, %v; want free", held, err)
			}
		})
		check(t, l)
		l.Close()
	})
	t.Run("MadeInAnotherBubble", func(t *testing.T) {
		var l *dlock.Locker
		synctest.Test(t, func(t *testing.T) {
			time.Sleep(time.Hour)
			l = memdriver.New(nil)
		})
		synctest.Test(t, func(t *testing.T) { check(t, l) })
		l.Close()
	})
}

// TestFencesExhausted: once a key's fence reached the largest uint64 (by a
// floor or a raise), no later grant may wrap around to a smaller fence: it
// is refused.
func TestFencesExhausted(t *testing.T) {
	for _, how := range []string{"floor", "raise"} {
		t.Run(how, func(t *testing.T) {
			d := newClient(t, memdriver.NewStore())
			ctx := t.Context()
			req := driver.Request{Key: "k", Token: "a", TTL: time.Minute}
			acquire := d.Acquire
			if how == "floor" {
				acquire = func(ctx context.Context, req driver.Request) (driver.Result, error) {
					return d.(redlock.FloorAcquirer).AcquireFloor(ctx, req, math.MaxUint64)
				}
			}
			res, err := acquire(ctx, req)
			if err != nil || !res.Acquired {
				t.Fatalf("Acquire = %+v, %v", res, err)
			}
			if how == "raise" {
				if err := d.(driver.FenceRaiser).RaiseFence(ctx, "k", "a", math.MaxUint64); err != nil {
					t.Fatal(err)
				}
			}
			if err := d.Release(ctx, "k", "a"); err != nil {
				t.Fatal(err)
			}
			res, err = d.Acquire(ctx, driver.Request{Key: "k", Token: "b", TTL: time.Minute})
			if err == nil && res.Acquired {
				t.Fatalf("grant after fence %d: fence %d; want the grant refused, fences cannot grow", uint64(math.MaxUint64), res.Fence)
			}
			if err != nil && !errors.Is(err, dlock.ErrInvalid) {
				t.Fatalf("Acquire after the last fence = %v; want ErrInvalid", err)
			}
		})
	}
}
