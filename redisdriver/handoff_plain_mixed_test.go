package redisdriver_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// plainOnly is a driver that notifies but refuses handoff (a wrapper that
// passes on Subscribe alone): its waiters subscribe plainly and are never
// queued.
type plainOnly struct {
	driver.Locker
	n driver.Notifier
}

func (p plainOnly) Subscribe(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	return p.n.Subscribe(ctx, key)
}

// TestHandoffPlainWaiterWokenAfterHandedLease: a plain waiter (over a
// driver that refuses handoff) and a handoff waiter (through a proxy with
// latency) wait for one key. The release hands the key to the queued
// waiter alone; the release of that handed-off lease, with nobody queued
// any more, wakes the plain waiter, which takes the key at once, not at
// its 20 s backoff or the first holder's 30 s expiry. Never two leases.
func TestHandoffPlainWaiterWokenAfterHandedLease(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	ctx := testCtx(t)
	px := redistest.NewProxy(t, s.Addr())
	px.Latency(2 * time.Millisecond)
	o := s.Options()
	o.Addr = px.Addr()
	holder := newLocker(t, s.Options(), nil)
	queued := newLocker(t, o, nil)
	c := redis.NewClient(s.Options())
	t.Cleanup(func() { c.Close() })
	d := redisdriver.NewDriver(c, nil)
	plain := dlock.New(plainOnly{Locker: d, n: d.(driver.Notifier)}, nil)
	t.Cleanup(func() { plain.Close() })
	key := uniqueKey("handoff/plain-mixed/")
	for round := range 3 {
		first, err := holder.TryAcquire(ctx, key, &dlock.LeaseOptions{TTL: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		gotPlain := goAcquire(ctx, plain, key, &dlock.LeaseOptions{TTL: 30 * time.Second, Retry: noPolling})
		waitSubscribed(t, admin, key)
		gotQueued := goAcquire(ctx, queued, key, &dlock.LeaseOptions{TTL: 30 * time.Second, Retry: noPolling})
		waitAttemptQueued(t, admin, key)
		if err := first.Release(ctx); err != nil {
			t.Fatal(err)
		}
		a := <-gotQueued
		if a.err != nil {
			t.Fatalf("round %d: the queued waiter: %v", round, a.err)
		}
		select {
		case p := <-gotPlain:
			t.Fatalf("round %d: the plain waiter got %v, %v while the handed-off lease is valid", round, p.lease, p.err)
		default:
		}
		released := time.Now()
		if err := a.lease.Release(ctx); err != nil {
			t.Fatal(err)
		}
		p := <-gotPlain
		if p.err != nil {
			t.Fatalf("round %d: the plain waiter: %v", round, p.err)
		}
		if d := p.at.Sub(released); d > 2*time.Second {
			t.Errorf("round %d: the plain waiter took the key %v after the release of the handed-off lease: not woken by it", round, d)
		}
		if err := p.lease.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := admin.Exists(ctx, "dlock:{"+key+"}").Val(); n != 0 {
		t.Fatal("the key is held after every lease was released")
	}
}

// TestHandoffPlainAndQueuedWaitersStress: waiters of one key over three
// Lockers, a plain one (its driver refuses handoff), a direct one and one
// through a proxy with latency, with contexts that end 1–40 ms into
// Acquire; the Lockers are closed while calls still wait. Never two valid
// leases at once; once every call returned and every Locker closed,
// nobody holds the key.
func TestHandoffPlainAndQueuedWaitersStress(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	ctx := testCtx(t)
	px := redistest.NewProxy(t, s.Addr())
	px.Latency(time.Millisecond)
	o := s.Options()
	o.Addr = px.Addr()
	c := redis.NewClient(s.Options())
	t.Cleanup(func() { c.Close() })
	d := redisdriver.NewDriver(c, nil)
	lockers := []*dlock.Locker{
		dlock.New(plainOnly{Locker: d, n: d.(driver.Notifier)}, nil),
		newLocker(t, s.Options(), nil),
		newLocker(t, o, nil),
	}
	key := uniqueKey("handoff/plain-stress/")
	opts := &dlock.LeaseOptions{TTL: 5 * time.Second, Retry: noPolling}
	var holders, leases, gaveUp atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(3 * time.Second)
	for i := range 15 {
		l := lockers[i%len(lockers)]
		wg.Go(func() {
			for time.Now().Before(stop) {
				cctx, cancel := context.WithTimeout(ctx, time.Duration(1+rand.IntN(40))*time.Millisecond)
				lease, err := l.Acquire(cctx, key, opts)
				cancel()
				if errors.Is(err, dlock.ErrClosed) {
					return
				}
				if err != nil {
					gaveUp.Add(1)
					continue
				}
				if n := holders.Add(1); n > 1 {
					t.Errorf("%d valid leases at once", n)
				}
				leases.Add(1)
				time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
				holders.Add(-1)
				if err := lease.Release(ctx); err != nil && !errors.Is(err, dlock.ErrClosed) && !errors.Is(err, dlock.ErrLeaseLost) {
					t.Errorf("release: %v", err)
				}
			}
		})
	}
	time.Sleep(time.Until(stop.Add(-500 * time.Millisecond)))
	for _, l := range lockers {
		l.Close()
	}
	wg.Wait()
	t.Logf("%d leases, %d calls gave up", leases.Load(), gaveUp.Load())
	if leases.Load() == 0 {
		t.Fatal("no lease was ever granted")
	}
	if v, err := admin.Get(ctx, "dlock:{"+key+"}").Result(); err != redis.Nil {
		t.Errorf("every call returned and every Locker closed, yet the key holds %q (%v)", v, err)
	}
}
