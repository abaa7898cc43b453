package dlock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// semClient is a memdriver client seen as a driver.Semaphore too.
type semClient interface {
	driver.Locker
	driver.Semaphore
}

// TestSemaphoreLimitFencesAndWake fills a semaphore of two slots, checks
// that a third TryAcquire is refused with ErrNotAcquired, and that a
// waiter is woken by a release (long before the holders' expiry) with a
// fence above every earlier one.
func TestSemaphoreLimitFencesAndWake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		l := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}})
		defer l.Close()
		semKey, sem := "backups", &dlock.LeaseOptions{Limit: 2}
		a, err := l.Acquire(t.Context(), semKey, sem)
		if err != nil {
			t.Fatal(err)
		}
		b, err := l.TryAcquire(t.Context(), semKey, sem)
		if err != nil {
			t.Fatal(err)
		}
		if b.Fence() <= a.Fence() {
			t.Errorf("fences %d then %d: a later slot's fence must be greater", a.Fence(), b.Fence())
		}
		other := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}})
		defer other.Close()
		osemKey, osem := "backups", &dlock.LeaseOptions{Limit: 2}
		if _, err := other.TryAcquire(t.Context(), osemKey, osem); !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("third TryAcquire = %v; want ErrNotAcquired", err)
		}
		got := make(chan *dlock.Lease, 1)
		go func() {
			c, err := other.Acquire(t.Context(), osemKey, osem)
			if err != nil {
				t.Error(err)
			}
			got <- c
		}()
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("a third holder got a slot while two held them")
		default:
		}
		start := time.Now()
		if err := a.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		c := <-got
		if waited := time.Since(start); waited > time.Second {
			t.Errorf("the waiter got the slot %v after the release; want it woken by the release", waited)
		}
		if c == nil || c.Fence() <= b.Fence() {
			t.Fatalf("the waiter's lease %v: its fence must exceed %d", c, b.Fence())
		}
		hs, err := other.Holders(t.Context(), osemKey)
		if err != nil || len(hs) != 2 || hs[0].Limit != 2 {
			t.Errorf("Holders = %v, %v; want 2 holders, limit 2", hs, err)
		}
		c.Release(t.Context())
		b.Release(t.Context())
	})
}

// TestSemaphoreRenewal keeps a lock and two slots for ten minutes of fake
// time with a one-second TTL, renewed in the same rounds: none is lost,
// and the slots stay taken.
func TestSemaphoreRenewal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		l := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
		defer l.Close()
		semKey, sem := "pool", &dlock.LeaseOptions{Limit: 2}
		var leases []*dlock.Lease
		for range 2 {
			le, err := l.Acquire(t.Context(), semKey, sem)
			if err != nil {
				t.Fatal(err)
			}
			leases = append(leases, le)
		}
		lock, err := l.Acquire(t.Context(), "lock", nil)
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, lock)
		for range 600 {
			time.Sleep(time.Second)
			for i, le := range leases {
				if err := le.Err(); err != nil {
					t.Fatalf("lease %d ended while renewal should keep it: %v", i, err)
				}
			}
		}
		other := store.Locker(nil)
		defer other.Close()
		if _, err := other.TryAcquire(t.Context(), "pool", &dlock.LeaseOptions{Limit: 2}); !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("TryAcquire of a renewed full semaphore = %v; want ErrNotAcquired", err)
		}
		if err := leases[0].Refresh(t.Context(), 2*time.Second); err != nil {
			t.Fatalf("Refresh of a slot's lease = %v", err)
		}
	})
}

// slotFault makes RefreshSlot answer ErrNotHeld on demand: the backend
// dropped the slot.
type slotFault struct {
	semClient
	dropped atomic.Bool
}

func (f *slotFault) RefreshSlot(ctx context.Context, key, token string, ttl time.Duration) error {
	if f.dropped.Load() {
		return driver.ErrNotHeld
	}
	return f.semClient.RefreshSlot(ctx, key, token, ttl)
}

func (f *slotFault) RefreshSlots(ctx context.Context, reqs []driver.RefreshRequest) []error {
	return driver.RefreshSlotsOneByOne(ctx, f, reqs)
}

// TestSemaphoreLossDetected: a slot the backend no longer has (its refresh
// is refused) ends the lease with ErrLeaseLost, and Do's fn sees it.
func TestSemaphoreLossDetected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &slotFault{semClient: memdriver.NewStore().Driver().(semClient)}
		l := dlock.New(f, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
		defer l.Close()
		err := l.Do(t.Context(), "k", &dlock.LeaseOptions{Limit: 3}, func(ctx context.Context, le *dlock.Lease) error {
			f.dropped.Store(true)
			<-ctx.Done()
			return context.Cause(ctx)
		})
		if !errors.Is(err, dlock.ErrLeaseLost) {
			t.Fatalf("Do = %v; want ErrLeaseLost once the slot's refresh is refused", err)
		}
	})
}

// TestSemaphoreRefusals: a different limit on a held key is refused with
// ErrLimitMismatch at once (not waited on), a lock on a semaphore's key
// is refused, a bad limit is ErrInvalid before any I/O, and a driver
// without semaphores answers errors.ErrUnsupported.
func TestSemaphoreRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		l := store.Locker(nil)
		defer l.Close()
		if _, err := l.Acquire(t.Context(), "k", &dlock.LeaseOptions{Limit: 2}); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Acquire(t.Context(), "k", &dlock.LeaseOptions{Limit: 3}); !errors.Is(err, dlock.ErrLimitMismatch) || errors.Is(err, dlock.ErrNotAcquired) {
			t.Errorf("Acquire with another limit = %v; want ErrLimitMismatch, not ErrNotAcquired (misuse, not busy)", err)
		}
		if _, err := l.TryAcquire(t.Context(), "k", nil); !errors.Is(err, dlock.ErrLimitMismatch) || errors.Is(err, dlock.ErrNotAcquired) {
			t.Errorf("a lock on a semaphore's key = %v; want ErrLimitMismatch (a lock is limit 1), not ErrNotAcquired (misuse, not busy)", err)
		}
		for _, n := range []int{-1, driver.MaxLimit + 1} {
			if _, err := l.TryAcquire(t.Context(), "k", &dlock.LeaseOptions{Limit: n}); !errors.Is(err, dlock.ErrInvalid) {
				t.Errorf("limit %d: %v; want ErrInvalid", n, err)
			}
		}
		bare := dlock.New(struct{ driver.Locker }{store.Driver()}, nil)
		defer bare.Close()
		if _, err := bare.TryAcquire(t.Context(), "k2", &dlock.LeaseOptions{Limit: 2}); !errors.Is(err, errors.ErrUnsupported) || errors.Is(err, dlock.ErrNotAcquired) {
			t.Errorf("a semaphore over a driver without the capability = %v; want errors.ErrUnsupported, not ErrNotAcquired", err)
		}
	})
}

// eventLog records events.
type eventLog struct {
	mu sync.Mutex
	ev []dlock.Event
}

func (o *eventLog) Observe(_ context.Context, e dlock.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ev = append(o.ev, e)
}

// TestSemaphoreEventsCarryLimit: a slot's events carry the limit; a
// lock's carry 0.
func TestSemaphoreEventsCarryLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		obs := &eventLog{}
		l := memdriver.New(&dlock.Options{Observer: obs.Observe})
		defer l.Close()
		le, err := l.Acquire(t.Context(), "k", &dlock.LeaseOptions{Limit: 4})
		if err != nil {
			t.Fatal(err)
		}
		le.Release(t.Context())
		lock, err := l.Acquire(t.Context(), "lock", nil)
		if err != nil {
			t.Fatal(err)
		}
		lock.Release(t.Context())
		synctest.Wait()
		obs.mu.Lock()
		defer obs.mu.Unlock()
		want := map[string]int{"k": 4, "lock": 0}
		if len(obs.ev) < 4 {
			t.Fatalf("events %v; want grants and releases of both", obs.ev)
		}
		for _, e := range obs.ev {
			if e.Limit != want[e.Key] {
				t.Errorf("event %v of %q has Limit %d; want %d", e.Kind, e.Key, e.Limit, want[e.Key])
			}
		}
	})
}

// TestElectionLimit: with Limit 2, two of three candidates lead at once,
// and the third takes over when one steps down.
func TestElectionLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		var leading, most atomic.Int64
		stop := make([]chan struct{}, 3)
		elected := make(chan int, 3)
		var wg sync.WaitGroup
		for i := range 3 {
			stop[i] = make(chan struct{})
			l := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
			defer l.Close()
			e := dlock.NewElection(l, "workers", &dlock.ElectionOptions{Lease: &dlock.LeaseOptions{Limit: 2}})
			wg.Go(func() {
				e.Run(t.Context(), func(ctx context.Context, _ *dlock.Lease) error {
					n := leading.Add(1)
					if n > most.Load() {
						most.Store(n)
					}
					elected <- i
					select {
					case <-stop[i]:
					case <-ctx.Done():
					}
					leading.Add(-1)
					return nil
				})
			})
		}
		first, second := <-elected, <-elected
		time.Sleep(10 * time.Second) // renewals: the third must stay a standby
		if got := leading.Load(); got != 2 {
			t.Fatalf("%d leaders; want 2", got)
		}
		close(stop[first])
		third := <-elected
		if third == first || third == second {
			t.Errorf("candidate %d elected again; want the standby", third)
		}
		close(stop[second])
		close(stop[third])
		wg.Wait()
		if m := most.Load(); m > 2 {
			t.Errorf("%d leaders at once with Limit 2", m)
		}
	})
}

// TestSemaphoreCloseFreesSlots: Locker.Close releases its semaphore
// leases' slots (not as locks), so others get them at once.
func TestSemaphoreCloseFreesSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		l := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Hour}})
		le, err := l.Acquire(t.Context(), "k", &dlock.LeaseOptions{Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
		if !errors.Is(le.Err(), dlock.ErrLeaseLost) {
			t.Errorf("lease after Close: %v; want ErrLeaseLost", le.Err())
		}
		other := store.Locker(nil)
		defer other.Close()
		for i := range 2 {
			if _, err := other.TryAcquire(t.Context(), "k", &dlock.LeaseOptions{Limit: 2}); err != nil {
				t.Errorf("TryAcquire %d after the holder's Locker closed = %v; want both slots", i+1, err)
			}
		}
	})
}

// TestSemaphoreLeaseLogValue: a semaphore lease logs its limit; a lock's
// lease logs none.
func TestSemaphoreLeaseLogValue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := memdriver.New(nil)
		defer l.Close()
		le, err := l.Acquire(t.Context(), "k", &dlock.LeaseOptions{Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		lock, err := l.Acquire(t.Context(), "lock", nil)
		if err != nil {
			t.Fatal(err)
		}
		limitOf := func(le *dlock.Lease) (int64, bool) {
			for _, a := range le.LogValue().Group() {
				if a.Key == "limit" {
					return a.Value.Int64(), true
				}
			}
			return 0, false
		}
		if n, ok := limitOf(le); !ok || n != 5 {
			t.Errorf("semaphore lease logs limit %d (%v); want 5", n, ok)
		}
		if _, ok := limitOf(lock); ok {
			t.Errorf("a lock's lease logs a limit")
		}
	})
}

// lostSlotReply applies AcquireSlot and then reports a timeout, as a reply
// lost on the network would.
type lostSlotReply struct{ semClient }

func (d lostSlotReply) AcquireSlot(ctx context.Context, req driver.Request, limit int) (driver.Result, error) {
	d.semClient.AcquireSlot(ctx, req, limit)
	return driver.Result{}, fmt.Errorf("lost reply: %w", driver.ErrOutcomeUnknown)
}

// TestSemaphoreUnknownOutcomeUndone: a slot grant whose reply was lost is
// undone at once with ReleaseSlot, so it does not keep a slot from others
// for a TTL.
func TestSemaphoreUnknownOutcomeUndone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		l := dlock.New(lostSlotReply{store.Driver().(semClient)}, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Hour}})
		defer l.Close()
		if _, err := l.TryAcquire(t.Context(), "k", &dlock.LeaseOptions{Limit: 2}); err == nil {
			t.Fatal("TryAcquire with a lost reply succeeded")
		}
		other := store.Locker(nil)
		defer other.Close()
		if _, err := other.TryAcquire(t.Context(), "k", &dlock.LeaseOptions{Limit: 2}); err != nil {
			t.Fatalf("TryAcquire after an undone grant = %v; want a slot", err)
		}
		le, err := other.TryAcquire(t.Context(), "k", &dlock.LeaseOptions{Limit: 2})
		if err != nil {
			t.Fatalf("TryAcquire after an undone grant = %v; want the slot", err)
		}
		le.Release(t.Context())
	})
}
