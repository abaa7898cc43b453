package dlock_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/conformance"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// refreshFault wraps a driver and makes Refresh fail on demand, with err.
// It hides the inner driver's optional capabilities, so renewal goes
// through Refresh one lease at a time.
type refreshFault struct {
	driver.Locker
	err       atomic.Pointer[error]
	refreshes atomic.Int64
}

func (f *refreshFault) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	f.refreshes.Add(1)
	if err := f.err.Load(); err != nil {
		return *err
	}
	return f.Locker.Refresh(ctx, key, token, ttl)
}

func (f *refreshFault) failWith(err error) { f.err.Store(&err) }

// TestRenewalKeepsLease holds a lease for ten minutes of fake time with a
// one-second TTL: renewal must keep it valid throughout.
func TestRenewalKeepsLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		l := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
		defer l.Close()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 600 {
			time.Sleep(time.Second)
			if err := lease.Err(); err != nil {
				t.Fatalf("lease ended while renewal should keep it: %v", err)
			}
		}
		other := store.Locker(nil)
		defer other.Close()
		if _, err := other.TryAcquire(t.Context(), "k", nil); !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("another locker's TryAcquire = %v; want ErrNotAcquired: the renewed lease must still hold the key", err)
		}
		if err := lease.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}

// TestLossSignalledBeforeExpiry makes refreshes fail after the lease was
// acquired: Done must close before the backend's expiry, while the key is
// still held on the backend.
func TestLossSignalledBeforeExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		fault := &refreshFault{Locker: store.Driver()}
		l := dlock.New(fault, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 3 * time.Second}})
		defer l.Close()
		start := time.Now()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		fault.failWith(driver.ErrUnavailable)
		<-lease.Context().Done()
		lostAfter := time.Since(start)
		if lostAfter >= 3*time.Second {
			t.Fatalf("lease lost after %v; want before the 3s TTL expires on the backend", lostAfter)
		}
		if lostAfter < 2*time.Second {
			t.Fatalf("lease lost after %v; transient errors must be retried until the local deadline", lostAfter)
		}
		if !errors.Is(lease.Err(), dlock.ErrLeaseLost) || !errors.Is(context.Cause(lease.Context()), dlock.ErrLeaseLost) {
			t.Fatalf("Err = %v, Cause = %v; want ErrLeaseLost", lease.Err(), context.Cause(lease.Context()))
		}
		if fault.refreshes.Load() < 3 {
			t.Errorf("only %d refresh attempts before the deadline; want retries", fault.refreshes.Load())
		}
		h, held, err := soleHolder(store.Locker(nil).Holders(t.Context(), "k"))
		if err != nil || !held {
			t.Fatalf("Holder = %v, %v, %v; the backend must still hold the key when the loss is signalled", h, held, err)
		}
	})
}

// TestNotHeldEndsLeaseAtOnce: a refresh answered with ErrNotHeld ends the
// lease at that refresh, not at the deadline.
func TestNotHeldEndsLeaseAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		fault := &refreshFault{Locker: store.Driver()}
		l := dlock.New(fault, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 3 * time.Second}})
		defer l.Close()
		start := time.Now()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		fault.failWith(driver.ErrNotHeld)
		<-lease.Context().Done()
		if d := time.Since(start); d != time.Second {
			t.Fatalf("lease lost after %v; want at the first renewal (1s)", d)
		}
		if !errors.Is(lease.Err(), dlock.ErrLeaseLost) || !errors.Is(lease.Err(), dlock.ErrNotHeld) {
			t.Fatalf("Err = %v; want ErrLeaseLost wrapping ErrNotHeld", lease.Err())
		}
		if err := lease.Release(t.Context()); !errors.Is(err, dlock.ErrLeaseLost) {
			t.Fatalf("Release of a lost lease = %v; want ErrLeaseLost", err)
		}
	})
}

func TestReleaseTwice(t *testing.T) {
	l := memdriver.New(nil)
	defer l.Close()
	lease, err := l.Acquire(t.Context(), "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := lease.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := lease.Release(t.Context()); !errors.Is(err, dlock.ErrNotHeld) {
		t.Fatalf("second Release = %v; want ErrNotHeld", err)
	}
	if !errors.Is(lease.Err(), dlock.ErrNotHeld) || errors.Is(lease.Err(), dlock.ErrLeaseLost) {
		t.Fatalf("Err after Release = %v; want ErrNotHeld, not ErrLeaseLost", lease.Err())
	}
}

// TestRenewalStopsAtRelease: nothing keeps renewing a released lease.
func TestRenewalStopsAtRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fault := &refreshFault{Locker: memdriver.NewStore().Driver()}
		l := dlock.New(fault, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
		defer l.Close()
		err := l.Do(t.Context(), "k", nil, func(ctx context.Context, _ *dlock.Lease) error {
			time.Sleep(2 * time.Second)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		n := fault.refreshes.Load()
		if n < 5 {
			t.Fatalf("%d refreshes in 2s with TTL 1s; want about 6", n)
		}
		time.Sleep(10 * time.Second)
		if m := fault.refreshes.Load(); m != n {
			t.Fatalf("%d refreshes after Do returned; want none", m-n)
		}
	})
}

// TestDoCancelsOnLoss: fn's context ends with ErrLeaseLost when the lease is
// lost, and Do reports the loss.
func TestDoCancelsOnLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fault := &refreshFault{Locker: memdriver.NewStore().Driver()}
		l := dlock.New(fault, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
		defer l.Close()
		err := l.Do(t.Context(), "k", nil, func(ctx context.Context, _ *dlock.Lease) error {
			fault.failWith(driver.ErrNotHeld)
			<-ctx.Done()
			if !errors.Is(context.Cause(ctx), dlock.ErrLeaseLost) {
				t.Errorf("fn's context cause = %v; want ErrLeaseLost", context.Cause(ctx))
			}
			return ctx.Err()
		})
		if !errors.Is(err, dlock.ErrLeaseLost) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Do = %v; want ErrLeaseLost and fn's context.Canceled", err)
		}
	})
}

// TestManyLeasesOneScheduler holds 10,000 leases with renewal: the number of
// goroutines must not grow with the number of leases, and none is lost.
func TestManyLeasesOneScheduler(t *testing.T) {
	for _, tc := range []struct {
		name string
		drv  func() driver.Locker
	}{
		{"Batched", func() driver.Locker { return memdriver.NewStore().Driver() }},
		{"OneByOne", func() driver.Locker { return &refreshFault{Locker: memdriver.NewStore().Driver()} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := dlock.New(tc.drv(), &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 3 * time.Second}})
				defer l.Close()
				before := runtime.NumGoroutine()
				leases := make([]*dlock.Lease, 10_000)
				for i := range leases {
					var err error
					if leases[i], err = l.TryAcquire(t.Context(), "k"+strconv.Itoa(i), nil); err != nil {
						t.Fatal(err)
					}
				}
				most := 0
				for range 100 {
					time.Sleep(100 * time.Millisecond)
					most = max(most, runtime.NumGoroutine()-before)
				}
				if most > 20 {
					t.Fatalf("%d goroutines above the start while holding 10,000 leases; want a bounded few", most)
				}
				for _, le := range leases {
					if le.Err() != nil {
						t.Fatalf("lease %s lost: %v", le.Key(), le.Err())
					}
				}
			})
		})
	}
}

// TestLateGrantRefused: a grant whose reply arrives after the lease's
// deadline is not handed out as a lease, and the key is given back.
func TestLateGrantRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		slow := conformance.Faulty(store.Driver())
		slow.SetLatency(2 * time.Second)
		l := dlock.New(slow, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
		defer l.Close()
		lease, err := l.TryAcquire(t.Context(), "k", nil)
		if err == nil {
			t.Fatalf("TryAcquire over a backend slower than the TTL returned a lease valid until %v", lease.ValidUntil())
		}
		if errors.Is(err, dlock.ErrNotAcquired) || !errors.Is(err, dlock.ErrUnavailable) {
			t.Fatalf("TryAcquire = %v; want ErrUnavailable, not ErrNotAcquired (nobody holds the key)", err)
		}
		if _, held, _ := soleHolder(store.Locker(nil).Holders(t.Context(), "k")); held {
			t.Fatal("the late grant was not released")
		}
	})
}

// batchCounter counts renewal rounds of a batching driver.
type batchCounter struct {
	driver.Locker
	rounds atomic.Int64
}

func (b *batchCounter) RefreshBatch(ctx context.Context, reqs []driver.RefreshRequest) []error {
	b.rounds.Add(1)
	return b.Locker.(driver.BatchRefresher).RefreshBatch(ctx, reqs)
}

// TestRenewalsCoalesce: leases acquired at different times end up renewed
// together, in one batch per renewal interval, not one round each.
func TestRenewalsCoalesce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &batchCounter{Locker: memdriver.NewStore().Driver()}
		l := dlock.New(drv, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 3 * time.Second}}) // renewed every 1s
		defer l.Close()
		for i := range 100 {
			if _, err := l.TryAcquire(t.Context(), "k"+strconv.Itoa(i), nil); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond) // acquires spread over a whole interval
		}
		time.Sleep(5 * time.Second) // let them fall into step
		before := drv.rounds.Load()
		time.Sleep(10 * time.Second)
		if n := drv.rounds.Load() - before; n > 11 {
			t.Fatalf("%d renewal rounds in 10 intervals for 100 leases; want them batched, about one per interval", n)
		}
	})
}

// TestIdleLockerKeepsNoGoroutine: the renewal goroutine outlives the last
// lease only briefly, whether the lease was released or lost, so a Locker
// nobody closes does not keep it: synctest fails a bubble whose goroutines
// outlive it.
func TestIdleLockerKeepsNoGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fault := &refreshFault{Locker: memdriver.NewStore().Driver()}
		l := dlock.New(fault, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 3 * time.Second}})
		for range 3 { // in a row: the goroutine is reused meanwhile
			lease, err := l.TryAcquire(t.Context(), "released", nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := lease.Release(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second)
		synctest.Wait()

		lease, err := l.Acquire(t.Context(), "lost", nil)
		if err != nil {
			t.Fatal(err)
		}
		fault.failWith(driver.ErrNotHeld)
		<-lease.Context().Done()
		time.Sleep(time.Second)
		synctest.Wait()
		// The bubble ends now: a goroutine left would fail the test.
	})
}

// waitRecorder records the Wait of every acquire attempt (zero for a plain
// one) and the token of every handoff subscription.
type waitRecorder struct {
	driver.Locker
	mu     sync.Mutex
	waits  []time.Duration
	tokens []string
}

func (w *waitRecorder) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	w.mu.Lock()
	w.waits = append(w.waits, 0)
	w.mu.Unlock()
	return w.Locker.Acquire(ctx, req)
}

func (w *waitRecorder) AcquireQueued(ctx context.Context, req driver.Request, q driver.Queued) (driver.Result, error) {
	w.mu.Lock()
	w.waits = append(w.waits, q.Wait)
	w.mu.Unlock()
	return w.Locker.(driver.Handoff).AcquireQueued(ctx, req, q)
}

func (w *waitRecorder) Subscribe(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	return w.Locker.(driver.Notifier).Subscribe(ctx, key)
}

func (w *waitRecorder) SubscribeHandoff(ctx context.Context, key, token string) (<-chan driver.Turn, func(), error) {
	w.mu.Lock()
	w.tokens = append(w.tokens, token)
	w.mu.Unlock()
	return w.Locker.(driver.Handoff).SubscribeHandoff(ctx, key, token)
}

// TestWaitingAttemptsCarryWait: every attempt of a subscribed waiter says
// how long the waiter may sleep after it (driver.Queued.Wait), so that a
// driver that queues waiters keeps their places, and the subscription
// names the waiter's token; TryAcquire does not wait, and the first
// attempt of Acquire, made before it subscribes, is plain.
func TestWaitingAttemptsCarryWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		holder := store.Locker(nil)
		defer holder.Close()
		lease, err := holder.TryAcquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		rec := &waitRecorder{Locker: store.Driver()}
		l := dlock.New(rec, &dlock.Options{LeaseOptions: dlock.LeaseOptions{Retry: dlock.ExponentialBackoff(50*time.Millisecond, 50*time.Millisecond)}})
		defer l.Close()
		if _, err := l.TryAcquire(t.Context(), "k", nil); !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("TryAcquire of a held key = %v", err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		if _, err := l.Acquire(ctx, "k", nil); !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("Acquire of a held key until a timeout = %v", err)
		}
		lease.Release(t.Context())
		if len(rec.waits) < 5 || rec.waits[0] != 0 || rec.waits[1] != 0 {
			t.Fatalf("attempts' Wait = %v; want 0 for the TryAcquire and the first attempt, then several attempts", rec.waits)
		}
		for i, w := range rec.waits[2:] {
			if w != 50*time.Millisecond {
				t.Errorf("waiting attempt %d has Wait %v; want the backoff, 50ms", i+2, w)
			}
		}
		if len(rec.tokens) != 1 || rec.tokens[0] == "" {
			t.Errorf("subscriptions' tokens = %q; want one, the waiter's", rec.tokens)
		}
	})
}
