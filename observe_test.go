package dlock_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

type recorder struct {
	mu     sync.Mutex
	events []dlock.Event
}

func (r *recorder) Observe(_ context.Context, e dlock.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, e := range r.events {
		if len(s) == 0 || s[len(s)-1] != e.Kind.String() {
			s = append(s, e.Kind.String()) // runs of one kind count once
		}
	}
	return s
}

// TestObserverAndLog follows a lease through grant, busy, renewals, failing
// renewals, loss and release, and checks the events and log lines, which
// must never show the token.
func TestObserverAndLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		var logs bytes.Buffer
		store := memdriver.NewStore()
		fault := &refreshFault{Locker: store.Driver()}
		l := dlock.New(fault, &dlock.Options{Observer: rec.Observe, Logger: slog.New(slog.NewTextHandler(&logs, nil)), LeaseOptions: dlock.LeaseOptions{TTL: 3 * time.Second, Owner: "w1"}})
		defer l.Close()

		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.TryAcquire(t.Context(), "k", nil); !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("TryAcquire of a held key = %v", err)
		}
		time.Sleep(2500 * time.Millisecond) // two renewals
		fault.failWith(driver.ErrUnavailable)
		<-lease.Context().Done()
		synctest.Wait()
		lease.Release(t.Context())

		want := []string{"granted", "busy", "not_acquired", "refreshed", "refresh_failed", "lost", "released"}
		if got := rec.kinds(); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("events %v; want %v", got, want)
		}
		for _, e := range rec.events {
			if e.Key != "k" || e.Owner != "w1" {
				t.Errorf("event %v has key %q owner %q; want k, w1", e.Kind, e.Key, e.Owner)
			}
			if e.Kind == dlock.EventLost && (!errors.Is(e.Err, dlock.ErrLeaseLost) || e.Fence != lease.Fence() || e.Duration < 2*time.Second) {
				t.Errorf("lost event %+v; want ErrLeaseLost, the fence and the time held", e)
			}
		}
		out := logs.String()
		if !strings.Contains(out, "lease lost") || !strings.Contains(out, "lease refresh failing") || !strings.Contains(out, "owner=w1") {
			t.Errorf("log lacks the loss warning or the refresh failures:\n%s", out)
		}
		if strings.Contains(out, "refreshed") || strings.Contains(out, "granted") {
			t.Errorf("log mentions successful operations:\n%s", out)
		}
		if strings.Contains(out, lease.Token()) {
			t.Errorf("log shows the token:\n%s", out)
		}
	})
}

// sickKey wraps a driver and makes every refresh of key fail with err, or
// ErrNotHeld if err is nil (as if someone had deleted the key). It hides
// the inner driver's optional capabilities.
type sickKey struct {
	driver.Locker
	key string
	err error
}

func (s *sickKey) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	if key == s.key && s.err != nil {
		return s.err
	}
	if key == s.key {
		return driver.ErrNotHeld
	}
	return s.Locker.Refresh(ctx, key, token, ttl)
}

// observerFunc adapts a function to dlock.Observer.
type observerFunc func(context.Context, dlock.Event)

func (f observerFunc) Observe(ctx context.Context, e dlock.Event) { f(ctx, e) }

// TestBlockingObserverDoesNotStopRenewal: an Observer that blocks for 5s on
// one lease's loss (declared by the renewal loop at its deadline, as its
// refreshes fail) must not stop the renewal of another lease of the same
// Locker (issue 17 item 7: the loop reported events itself, so another
// Locker acquired the healthy key while its lease reported no loss).
func TestBlockingObserverDoesNotStopRenewal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		obs := observerFunc(func(_ context.Context, e dlock.Event) {
			if e.Kind == dlock.EventLost && e.Key == "sick" {
				time.Sleep(5 * time.Second)
			}
		})
		l := dlock.New(&sickKey{Locker: store.Driver(), key: "sick", err: driver.ErrUnavailable}, &dlock.Options{Observer: obs, LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
		defer l.Close()
		healthy, err := l.Acquire(t.Context(), "healthy", nil)
		if err != nil {
			t.Fatal(err)
		}
		sick, err := l.Acquire(t.Context(), "sick", nil)
		if err != nil {
			t.Fatal(err)
		}
		<-sick.Context().Done()
		time.Sleep(3 * time.Second)
		other := store.Locker(nil)
		defer other.Close()
		if lease, err := other.TryAcquire(t.Context(), "healthy", nil); err == nil {
			lease.Release(t.Context())
			t.Fatalf("another Locker acquired %q (fence %d) while the holder's lease reports Err()=%v: a blocked Observer stopped renewal",
				"healthy", lease.Fence(), healthy.Err())
		}
		if err := healthy.Err(); err != nil {
			t.Fatalf("healthy lease lost while an Observer blocked on another lease's loss: %v", err)
		}
		healthy.Release(t.Context())
		time.Sleep(5 * time.Second) // let the Observer return
	})
}

// TestLeaseEventsInOrder: a lease lost by renewal and then released must
// report lost before released, however the event goroutine and the
// releasing one are scheduled (issue 17 item 7: released could come first).
func TestLeaseEventsInOrder(t *testing.T) {
	for i := range 50 {
		synctest.Test(t, func(t *testing.T) {
			var rec recorder
			store := memdriver.NewStore()
			key := fmt.Sprint("k", i)
			l := dlock.New(&sickKey{Locker: store.Driver(), key: key}, &dlock.Options{Observer: rec.Observe, LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
			defer l.Close()
			lease, err := l.Acquire(t.Context(), key, nil)
			if err != nil {
				t.Fatal(err)
			}
			<-lease.Context().Done()
			if err := lease.Release(t.Context()); !errors.Is(err, dlock.ErrLeaseLost) {
				t.Fatalf("Release of a lost lease = %v; want ErrLeaseLost", err)
			}
			synctest.Wait()
			if got, want := strings.Join(rec.kinds(), " "), "granted lost released"; got != want {
				t.Fatalf("events %q; want %q", got, want)
			}
		})
	}
}

// TestObserverPanics: an Observer that panics on every event, EventGranted
// included, neither takes the caller, the renewal nor the process with it;
// the lease is renewed and released as usual, and the panic is logged once
// (issue 17 item 7: a panic on EventGranted left a lease renewed forever,
// and one on the renewal loop killed the process).
func TestObserverPanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs syncBuffer
		store := memdriver.NewStore()
		obs := observerFunc(func(context.Context, dlock.Event) { panic("observer bug") })
		l := dlock.New(store.Driver(), &dlock.Options{Observer: obs, Logger: slog.New(slog.NewTextHandler(&logs, nil)), LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
		defer l.Close()
		var lease *dlock.Lease
		func() {
			defer func() {
				if v := recover(); v != nil {
					t.Fatalf("Acquire panicked with the Observer's panic: %v", v)
				}
			}()
			var err error
			if lease, err = l.Acquire(t.Context(), "k", nil); err != nil {
				t.Fatal(err)
			}
		}()
		time.Sleep(5 * time.Second) // renewals, each reported to the panicking Observer
		if err := lease.Err(); err != nil {
			t.Fatalf("lease lost while the Observer panicked: %v", err)
		}
		if err := lease.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		other := store.Locker(nil)
		defer other.Close()
		second, err := other.TryAcquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatalf("key still held after Release: %v", err)
		}
		second.Release(t.Context())
		synctest.Wait()
		if n := strings.Count(logs.String(), "Observer panicked"); n != 1 {
			t.Errorf("the panic was logged %d times; want once:\n%s", n, logs.String())
		}
	})
}

// TestObserverCallsClose: an Observer that closes its Locker when it sees
// a renewal must not deadlock (issue 17 item 9: Close waited for the
// renewal round that was reporting the event).
func TestObserverCallsClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l *dlock.Locker
		var once sync.Once
		obs := observerFunc(func(_ context.Context, e dlock.Event) {
			if e.Kind == dlock.EventRefreshed {
				once.Do(func() { l.Close() })
			}
		})
		l = memdriver.New(&dlock.Options{Observer: obs, LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
		defer l.Close()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		<-lease.Context().Done() // a deadlock fails the bubble here
		if err := lease.Err(); !errors.Is(err, dlock.ErrClosed) {
			t.Fatalf("lease ended with %v; want ErrClosed", err)
		}
	})
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// slowUnsubscribe is a driver whose subscriptions take half a second to
// end, as redisdriver's do when the UNSUBSCRIBE round trip is slow.
type slowUnsubscribe struct{ driver.Locker }

func (d slowUnsubscribe) Subscribe(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	ch, cancel, err := d.Locker.(driver.Notifier).Subscribe(ctx, key)
	return ch, func() { time.Sleep(500 * time.Millisecond); cancel() }, err
}

// TestGrantedBeforeLeaseEvents: a lease's EventGranted comes before its
// renewals' events, also when the Acquire call is slow to return after the
// grant (here its unsubscribe takes longer than a renewal interval): the
// events of a lease arrive in the order they happened.
func TestGrantedBeforeLeaseEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		holder := store.Locker(nil)
		defer holder.Close()
		first, err := holder.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		var rec recorder
		l := dlock.New(slowUnsubscribe{store.Driver()}, &dlock.Options{Observer: rec.Observe, LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
		defer l.Close()
		got := make(chan *dlock.Lease)
		go func() {
			lease, err := l.Acquire(t.Context(), "k", nil)
			if err != nil {
				t.Error(err)
			}
			got <- lease
		}()
		synctest.Wait() // waiting, subscribed
		first.Release(t.Context())
		lease := <-got
		if lease == nil {
			return
		}
		lease.Release(t.Context())
		synctest.Wait()
		kinds := rec.kinds()
		if i := slices.Index(kinds, "granted"); i < 0 || slices.Contains(kinds[:i], "refreshed") {
			t.Fatalf("events %q; want granted before the lease's refreshed", kinds)
		}
	})
}
