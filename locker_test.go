package dlock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// lostReply applies every Acquire and then reports err instead of the
// result, as a backend whose reply was lost does; while hang is set, it
// first waits for the caller's context to end.
type lostReply struct {
	driver.Locker
	err  error
	hang bool
	n    atomic.Int32 // Acquire calls
}

func (d *lostReply) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	d.n.Add(1)
	if _, err := d.Locker.Acquire(context.WithoutCancel(ctx), req); err != nil {
		return driver.Result{}, err
	}
	if d.hang {
		<-ctx.Done()
		return driver.Result{}, fmt.Errorf("lostReply: %w", ctx.Err())
	}
	return driver.Result{}, d.err
}

// timeoutError is an error of unknown outcome by the Timeout convention.
type timeoutError struct{}

func (timeoutError) Error() string { return "read tcp: i/o timeout" }
func (timeoutError) Timeout() bool { return true }

// mustBeFree checks that another client of store can take key at once.
func mustBeFree(t *testing.T, store *memdriver.Store, key, why string) {
	t.Helper()
	l := store.Locker(nil)
	defer l.Close()
	lease, err := l.TryAcquire(t.Context(), key, nil)
	if err != nil {
		t.Fatalf("another client's TryAcquire = %v: %s", err, why)
	}
	lease.Release(t.Context())
}

// TestUnknownOutcomeUndone: an attempt that was granted although the
// caller saw a failure is released before the call returns, whatever the
// failure: a timeout, an error naming the unknown outcome, a context that
// ended in flight; for TryAcquire and for Acquire.
func TestUnknownOutcomeUndone(t *testing.T) {
	for _, tc := range []struct {
		name string
		drv  func(driver.Locker) *lostReply
		wait bool
		want error // the error's sentinel; never ErrNotAcquired, as nobody holds the key
	}{
		{"TryAcquireTimeout", func(d driver.Locker) *lostReply { return &lostReply{Locker: d, err: timeoutError{}} }, false, dlock.ErrUnavailable},
		{"TryAcquireOutcomeUnknown", func(d driver.Locker) *lostReply {
			return &lostReply{Locker: d, err: fmt.Errorf("conn reset: %w", driver.ErrOutcomeUnknown)}
		}, false, dlock.ErrUnavailable},
		{"TryAcquireContextEnded", func(d driver.Locker) *lostReply { return &lostReply{Locker: d, hang: true} }, false, context.DeadlineExceeded},
		{"AcquireContextEnded", func(d driver.Locker) *lostReply { return &lostReply{Locker: d, hang: true} }, true, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := memdriver.NewStore()
				l := dlock.New(tc.drv(store.Driver()), &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}})
				defer l.Close()
				ctx, cancel := context.WithTimeout(t.Context(), time.Second)
				defer cancel()
				acquire := l.TryAcquire
				if tc.wait {
					acquire = l.Acquire
				}
				if lease, err := acquire(ctx, "k", nil); !errors.Is(err, tc.want) || errors.Is(err, dlock.ErrNotAcquired) {
					t.Fatalf("acquire = %v, %v; want %v, not ErrNotAcquired", lease, err, tc.want)
				}
				mustBeFree(t, store, "k", "the grant whose reply was lost must be undone before the call returns")
			})
		})
	}
}

// TestWaiterUndoesBeforeSleeping: a waiting Acquire whose attempt timed
// out does not sit on its own grant while it sleeps its backoff.
func TestWaiterUndoesBeforeSleeping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		drv := &lostReply{Locker: store.Driver(), err: timeoutError{}}
		l := dlock.New(drv, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute, Retry: dlock.ExponentialBackoff(time.Hour, time.Hour)}})
		defer l.Close()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() {
			_, err := l.Acquire(ctx, "k", nil)
			done <- err
		}()
		synctest.Wait() // the waiter sleeps its backoff
		if n := drv.n.Load(); n != 1 {
			t.Fatalf("%d attempts before the backoff; want 1", n)
		}
		mustBeFree(t, store, "k", "a waiter whose attempt timed out must undo it before sleeping its backoff")
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Acquire = %v; want context.Canceled", err)
		}
	})
}

// gate applies every Acquire and then holds the reply until open is
// closed.
type gate struct {
	driver.Locker
	entered chan struct{}
	open    chan struct{}
}

func (g *gate) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	res, err := g.Locker.Acquire(ctx, req)
	close(g.entered)
	<-g.open
	return res, err
}

// TestCloseRacingGrant: a grant that arrives while Close runs is released
// before the driver closes, so the key is free once Close returns.
func TestCloseRacingGrant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		g := &gate{Locker: store.Driver(), entered: make(chan struct{}), open: make(chan struct{})}
		l := dlock.New(g, nil)
		got := make(chan error)
		go func() {
			_, err := l.TryAcquire(t.Context(), "k", nil)
			got <- err
		}()
		<-g.entered
		closed := make(chan error)
		go func() { closed <- l.Close() }()
		synctest.Wait() // Close waits for the call in flight
		close(g.open)
		if err := <-got; !errors.Is(err, dlock.ErrClosed) || errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("TryAcquire granted while closing = %v; want ErrClosed, not ErrNotAcquired (nobody else held the key)", err)
		}
		if err := <-closed; err != nil {
			t.Fatalf("Close = %v", err)
		}
		mustBeFree(t, store, "k", "a grant that raced Close must be released before Close returns")
	})
}

// TestCloseEndsWaiters: Close wakes a waiting Acquire, which reports
// ErrClosed.
func TestCloseEndsWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		holder := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Hour}})
		defer holder.Close()
		if _, err := holder.TryAcquire(t.Context(), "k", nil); err != nil {
			t.Fatal(err)
		}
		l := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{Retry: dlock.ExponentialBackoff(time.Hour, time.Hour)}})
		got := make(chan error)
		go func() {
			_, err := l.Acquire(t.Context(), "k", nil)
			got <- err
		}()
		synctest.Wait()
		start := time.Now()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-got; !errors.Is(err, dlock.ErrClosed) || !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("waiting Acquire after Close = %v; want ErrNotAcquired and ErrClosed", err)
		}
		if d := time.Since(start); d > 0 {
			t.Fatalf("the waiter ended %v of fake time after Close began; Close must end it at once", d)
		}
	})
}

// blamesBackend fails every Acquire when its context ends, blaming the
// backend, as a dial cut short by the caller's deadline does.
type blamesBackend struct{ driver.Locker }

func (blamesBackend) Acquire(ctx context.Context, _ driver.Request) (driver.Result, error) {
	<-ctx.Done()
	return driver.Result{}, fmt.Errorf("redisdriver: %w: dial tcp 127.0.0.1:6379: i/o timeout", driver.ErrUnavailable)
}

// TestEndedContextNotUnavailable: a call whose context ended before any
// attempt was answered reports ctx.Err() alone: not ErrUnavailable, even
// when the driver blames the backend, and not ErrNotAcquired, as nothing
// says the key is held.
func TestEndedContextNotUnavailable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := dlock.New(blamesBackend{memdriver.NewStore().Driver()}, nil)
		defer l.Close()
		for name, acquire := range map[string]func(context.Context, string, *dlock.LeaseOptions) (*dlock.Lease, error){
			"Acquire": l.Acquire, "TryAcquire": l.TryAcquire,
		} {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			_, err := acquire(ctx, "k", nil)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, dlock.ErrNotAcquired) || errors.Is(err, dlock.ErrUnavailable) {
				t.Errorf("%s with a deadline that expired in flight = %v; want DeadlineExceeded, neither ErrNotAcquired nor ErrUnavailable (no attempt was answered)", name, err)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("%s error %q spans lines; want one", name, err)
			}
		}
	})
}

// TestDoPanicReleases: a panic in Do's function frees the key at once and
// goes on to the caller.
func TestDoPanicReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		var events []dlock.EventKind
		var mu sync.Mutex
		obs := observerFunc(func(_ context.Context, e dlock.Event) {
			mu.Lock()
			events = append(events, e.Kind)
			mu.Unlock()
		})
		l := store.Locker(&dlock.Options{Observer: obs, LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}})
		defer l.Close()
		func() {
			defer func() {
				if r := recover(); r != "boom" {
					t.Fatalf("recovered %v; want Do to re-panic with fn's value", r)
				}
			}()
			l.Do(t.Context(), "k", nil, func(context.Context, *dlock.Lease) error { panic("boom") })
		}()
		mustBeFree(t, store, "k", "Do's fn panicked: the lease must be released")
		mu.Lock()
		defer mu.Unlock()
		if len(events) == 0 || events[len(events)-1] != dlock.EventReleased {
			t.Errorf("events = %v; want the release reported", events)
		}
	})
}

// TestDoAfterCloseReportsLoss: a Do whose lease Close ended reports
// ErrLeaseLost, not "already released".
func TestDoAfterCloseReportsLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := memdriver.New(nil)
		err := l.Do(t.Context(), "k", nil, func(ctx context.Context, _ *dlock.Lease) error {
			l.Close()
			<-ctx.Done()
			return nil
		})
		if !errors.Is(err, dlock.ErrLeaseLost) || !errors.Is(err, dlock.ErrClosed) {
			t.Fatalf("Do whose lease Close ended = %v; want ErrLeaseLost and ErrClosed", err)
		}
	})
}

// turns is a Notifier that, like a driver that queues waiters, wakes only
// the first subscriber still queued at each release: its turn.
type turns struct {
	driver.Locker
	mu         sync.Mutex
	queue      []chan struct{}
	beforeWake func() // if set, runs before a release wakes the first waiter
}

func (d *turns) Subscribe(_ context.Context, _ string) (<-chan struct{}, func(), error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := make(chan struct{}, 1)
	d.queue = append(d.queue, c)
	return c, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		for i, q := range d.queue {
			if q == c {
				d.queue = append(d.queue[:i], d.queue[i+1:]...)
			}
		}
	}, nil
}

func (d *turns) Release(ctx context.Context, key, token string) error {
	err := d.Locker.Release(ctx, key, token)
	if err == nil {
		d.mu.Lock()
		if len(d.queue) > 0 {
			if d.beforeWake != nil {
				d.beforeWake()
			}
			d.queue[0] <- struct{}{}
			d.queue = d.queue[1:]
		}
		d.mu.Unlock()
	}
	return err
}

// TestWokenWaiterPassesTurn: a waiter woken for its turn that finds its
// context ended passes the turn on, so the next waiter does not sleep
// until its backoff.
func TestWokenWaiterPassesTurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		drv := &turns{Locker: memdriver.NewStore().Driver()}
		opts := &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Hour, Retry: dlock.ExponentialBackoff(time.Hour, time.Hour)}}
		holder, a, b := dlock.New(drv, opts), dlock.New(drv, opts), dlock.New(drv, opts)
		defer holder.Close()
		defer a.Close()
		defer b.Close()
		lease, err := holder.TryAcquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		actx, cancel := context.WithCancel(t.Context())
		aGot := make(chan error)
		go func() {
			_, err := a.Acquire(actx, "k", nil)
			aGot <- err
		}()
		synctest.Wait() // a is queued first
		bGot := make(chan *dlock.Lease)
		go func() {
			l, err := b.Acquire(t.Context(), "k", nil)
			if err != nil {
				t.Error(err)
			}
			bGot <- l
		}()
		synctest.Wait()
		start := time.Now()
		// a's context ends just as the release wakes it alone: whichever
		// it sees first, it must pass its turn on.
		drv.beforeWake = cancel
		lease.Release(t.Context())
		if err := <-aGot; !errors.Is(err, context.Canceled) {
			t.Fatalf("a's Acquire = %v; want context.Canceled", err)
		}
		bl := <-bGot
		if d := time.Since(start); d > time.Second {
			t.Fatalf("b got the key %v after the release; a woken waiter that left must pass its turn on", d)
		}
		if bl != nil {
			bl.Release(t.Context())
		}
	})
}

// TestReleaseAfterCloseReportsLoss: Lease.Release after Close ended the
// lease reports ErrLeaseLost, as its doc says for a lost lease.
func TestReleaseAfterCloseReportsLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := memdriver.New(nil)
		lease, err := l.TryAcquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		if err := lease.Release(t.Context()); !errors.Is(err, dlock.ErrLeaseLost) || !errors.Is(err, dlock.ErrClosed) {
			t.Fatalf("Release after Close = %v; want ErrLeaseLost and ErrClosed", err)
		}
		if err := lease.Release(t.Context()); !errors.Is(err, dlock.ErrNotHeld) {
			t.Fatalf("second Release after Close = %v; want ErrNotHeld (already released)", err)
		}
	})
}

// TestReleaseDuringClose: a Lease.Release while Close waits for a renewal
// round in flight reports the loss (ErrLeaseLost, ErrClosed), not "already
// released", and the lease reports the loss from the moment Close began:
// Close stops renewing it then.
func TestReleaseDuringClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &gatedRefresh{Locker: memdriver.NewStore().Driver(), ttl: time.Second, held: make(chan struct{}), open: make(chan struct{})}
		l := dlock.New(g, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		<-g.held // a renewal round is in flight
		closed := make(chan error)
		go func() { closed <- l.Close() }()
		synctest.Wait() // Close waits for the round
		lerr := lease.Err()
		rerr := lease.Release(t.Context())
		close(g.open)
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
		if !errors.Is(lerr, dlock.ErrLeaseLost) || !errors.Is(lerr, dlock.ErrClosed) {
			t.Errorf("Lease.Err while Close waits = %v; want ErrLeaseLost and ErrClosed", lerr)
		}
		if !errors.Is(rerr, dlock.ErrLeaseLost) || !errors.Is(rerr, dlock.ErrClosed) {
			t.Errorf("Release while Close waits = %v; want ErrLeaseLost and ErrClosed", rerr)
		}
	})
}

// lateUndo grants the first Acquire and reports a timeout instead, and
// times out on the first Release too without applying it: that release
// stays in the network and reaches the backend just after the second
// Acquire, as a packet delayed behind later ones does.
type lateUndo struct {
	driver.Locker
	acquires, releases atomic.Int32
	mu                 sync.Mutex
	key, token         string // the delayed release
}

func (d *lateUndo) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	res, err := d.Locker.Acquire(ctx, req)
	switch d.acquires.Add(1) {
	case 1:
		if err == nil {
			return driver.Result{}, timeoutError{}
		}
	case 2:
		d.deliver(ctx)
	}
	return res, err
}

func (d *lateUndo) Release(ctx context.Context, key, token string) error {
	if d.releases.Add(1) == 1 {
		d.mu.Lock()
		d.key, d.token = key, token
		d.mu.Unlock()
		return timeoutError{}
	}
	return d.Locker.Release(ctx, key, token)
}

// deliver applies the delayed release.
func (d *lateUndo) deliver(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.token != "" {
		d.Locker.Release(ctx, d.key, d.token)
	}
}

// TestLateUndoCannotFreeLaterGrant: an attempt whose outcome is unknown is
// undone, and the undo's own outcome is unknown too; when that release
// reaches the backend late, after a later attempt was granted, it must not
// free the key under the lease that attempt returned. (With the same token
// for every attempt, it did: another client took the key while the lease
// reported itself valid.)
func TestLateUndoCannotFreeLaterGrant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		drv := &lateUndo{Locker: store.Driver()}
		l := dlock.New(drv, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute, Retry: dlock.ExponentialBackoff(10*time.Millisecond, 10*time.Millisecond)}})
		defer l.Close()
		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer lease.Release(t.Context())
		other := store.Locker(nil)
		defer other.Close()
		if second, err := other.TryAcquire(t.Context(), "k", nil); err == nil {
			t.Fatalf("two holders: another client took %q (fence %d) while the first lease (fence %d) reports Err() = %v",
				"k", second.Fence(), lease.Fence(), lease.Err())
		}
	})
}

// TestReleaseWithEndedContext: a caller that gave up (its context ended)
// and releases with that context still frees the key: it must not stay
// held for a TTL by a lease nobody renews or uses.
func TestReleaseWithEndedContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		l := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}})
		defer l.Close()
		ctx, cancel := context.WithCancel(t.Context())
		lease, err := l.TryAcquire(ctx, "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := lease.Release(ctx); err != nil {
			t.Errorf("Release with an ended context = %v; want nil, the key freed", err)
		}
		mustBeFree(t, store, "k", "Release with an ended context must free the key")
	})
}
