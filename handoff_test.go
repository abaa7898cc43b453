package dlock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// hooked is a memdriver client, handoff included, whose Acquire and
// AcquireQueued go through hook when set: hook gets the request, how it is
// queued (zero for Acquire) and the call to the store.
type hooked struct {
	driver.Locker
	hook func(ctx context.Context, req driver.Request, q driver.Queued, acquire func() (driver.Result, error)) (driver.Result, error)
}

func (d *hooked) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	acquire := func() (driver.Result, error) { return d.Locker.Acquire(ctx, req) }
	if d.hook == nil {
		return acquire()
	}
	return d.hook(ctx, req, driver.Queued{}, acquire)
}

func (d *hooked) AcquireQueued(ctx context.Context, req driver.Request, q driver.Queued) (driver.Result, error) {
	acquire := func() (driver.Result, error) { return d.Locker.(driver.Handoff).AcquireQueued(ctx, req, q) }
	if d.hook == nil {
		return acquire()
	}
	return d.hook(ctx, req, q, acquire)
}

func (d *hooked) Subscribe(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	return d.Locker.(driver.Notifier).Subscribe(ctx, key)
}

func (d *hooked) SubscribeHandoff(ctx context.Context, key, token string) (<-chan driver.Turn, func(), error) {
	return d.Locker.(driver.Handoff).SubscribeHandoff(ctx, key, token)
}

// hold takes key on d for an hour with a token of its own, and returns a
// function that releases it.
func hold(t *testing.T, d driver.Locker, key string) (release func()) {
	t.Helper()
	tok := fmt.Sprintf("holder-%p", t)
	if res, err := d.Acquire(t.Context(), driver.Request{Key: key, Token: tok, TTL: time.Hour}); err != nil || !res.Acquired {
		t.Fatalf("holder's Acquire = %+v, %v", res, err)
	}
	return func() {
		if err := d.Release(context.WithoutCancel(t.Context()), key, tok); err != nil {
			t.Errorf("holder's Release = %v", err)
		}
	}
}

// goAcquire runs l.Acquire(ctx, key) in a goroutine.
func goAcquire(ctx context.Context, l *dlock.Locker, key string) <-chan acquiredLease {
	c := make(chan acquiredLease, 1)
	go func() {
		le, err := l.Acquire(ctx, key, nil)
		c <- acquiredLease{le, err, time.Now()}
	}()
	return c
}

type acquiredLease struct {
	lease *dlock.Lease
	err   error
	at    time.Time
}

// mustHold checks that key is held with fence.
func mustHold(t *testing.T, in driver.Inspector, key string, fence uint64, why string) {
	t.Helper()
	h, ok, err := in.Inspect(t.Context(), key)
	if err != nil || !ok || h.Fence != fence {
		t.Errorf("Inspect(%q) = %+v, held %v, %v; want held with the lease's fence %d: %s", key, h, ok, err, fence, why)
	}
}

// TestHandoffLeaseFromAttempt: a waiter handed the key counts its lease
// from the send time of its queued attempt, not from the release or the
// Turn's arrival; the store keeps the key from the release for a TTL.
func TestHandoffLeaseFromAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memdriver.NewStore()
		const ttl, drift, queued = 10 * time.Second, 100 * time.Millisecond, 5 * time.Second
		release := hold(t, s.Driver(), "k")
		attempts := 0
		d := &hooked{Locker: s.Driver(), hook: func(_ context.Context, _ driver.Request, _ driver.Queued, acquire func() (driver.Result, error)) (driver.Result, error) {
			attempts++
			return acquire()
		}}
		l := dlock.New(d, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: ttl, Drift: drift, RenewInterval: -1, Retry: dlock.ExponentialBackoff(time.Hour, time.Hour)}})
		defer l.Close()
		sent := time.Now()
		got := goAcquire(t.Context(), l, "k")
		synctest.Wait() // queued: its attempts were sent at sent, fake time standing still
		time.Sleep(queued)
		release()
		r := <-got
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.lease.Release(t.Context())
		if attempts != 2 {
			t.Errorf("the waiter made %d attempts; want 2 (one before subscribing, one queued), then the grant", attempts)
		}
		if want := sent.Add(ttl - drift); !r.lease.ValidUntil().Equal(want) {
			t.Errorf("handed-off lease valid until %v after the queued attempt; want %v (TTL - Drift from the attempt's send time)",
				r.lease.ValidUntil().Sub(sent), want.Sub(sent))
		}
		h, ok, err := s.Driver().(driver.Inspector).Inspect(t.Context(), "k")
		if err != nil || !ok || h.Fence != r.lease.Fence() || h.TTL != ttl {
			t.Errorf("Inspect after the handoff = %+v, held %v, %v; want the lease's fence %d and a TTL of %v from the release", h, ok, err, r.lease.Fence(), ttl)
		}
		if expiry := time.Now().Add(h.TTL); r.lease.ValidUntil().After(expiry) {
			t.Errorf("lease valid until %v, after the store's expiry %v", r.lease.ValidUntil(), expiry)
		}
	})
}

// TestHandoffInOrder: waiters are handed the key in the order they came,
// each at the release before it.
func TestHandoffInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memdriver.NewStore()
		release := hold(t, s.Driver(), "k")
		const n = 5
		var mu sync.Mutex
		var order []int
		var wg sync.WaitGroup
		start := time.Now()
		for i := range n {
			l := s.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute, Retry: dlock.ExponentialBackoff(time.Hour, time.Hour)}})
			defer l.Close()
			wg.Go(func() {
				le, err := l.Acquire(t.Context(), "k", nil)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
				if d := time.Since(start); d != 0 {
					t.Errorf("waiter %d got the key %v after the releases; want at once", i, d)
				}
				le.Release(t.Context())
			})
			synctest.Wait() // queued before the next
		}
		release()
		wg.Wait()
		for i, w := range order {
			if w != i {
				t.Fatalf("waiters got the key in the order %v; want the order they came in", order)
			}
		}
	})
}

// TestHandoffGrantReleasedOnExit: a waiter whose context ends while a
// grant sits in its channel releases it, so that the next waiter gets the
// key at once, not after the grant's TTL.
func TestHandoffGrantReleasedOnExit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memdriver.NewStore()
		release := hold(t, s.Driver(), "k")
		// a's second queued attempt hangs until its context ends, and
		// then fails without reaching the store.
		hanging := make(chan struct{})
		a := dlock.New(&hooked{Locker: s.Driver(), hook: func(ctx context.Context, req driver.Request, q driver.Queued, acquire func() (driver.Result, error)) (driver.Result, error) {
			if q.Attempt == 2 {
				close(hanging)
				<-ctx.Done()
				return driver.Result{}, fmt.Errorf("test: not sent: %w", driver.ErrUnavailable)
			}
			return acquire()
		}}, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Hour, Retry: dlock.ExponentialBackoff(time.Second, time.Second)}})
		defer a.Close()
		b := s.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Hour, Retry: dlock.ExponentialBackoff(time.Hour, time.Hour)}})
		defer b.Close()
		actx, cancel := context.WithCancel(t.Context())
		aGot := goAcquire(actx, a, "k")
		synctest.Wait()
		bGot := goAcquire(t.Context(), b, "k")
		synctest.Wait()
		// Within its Wait, which keeps it queued, a's next attempt
		// hangs.
		<-hanging
		release() // hands the key to a, on its first queued attempt
		start := time.Now()
		cancel()
		if r := <-aGot; !errors.Is(r.err, context.Canceled) {
			if r.lease != nil {
				r.lease.Release(t.Context())
			}
			t.Fatalf("a's Acquire = %v; want context.Canceled", r.err)
		}
		r := <-bGot
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.lease.Release(t.Context())
		if d := r.at.Sub(start); d != 0 {
			t.Errorf("b got the key %v after a left; want at once: a must release the grant it left unread", d)
		}
	})
}

// TestHandoffOwnReplyKeepsLease: a waiter whose own attempt returns the
// lease while the grant of the same hold sits in its channel keeps the
// lease: it does not release the grant.
func TestHandoffOwnReplyKeepsLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memdriver.NewStore()
		release := hold(t, s.Driver(), "k")
		gate, hanging := make(chan struct{}), make(chan struct{})
		l := dlock.New(&hooked{Locker: s.Driver(), hook: func(_ context.Context, req driver.Request, q driver.Queued, acquire func() (driver.Result, error)) (driver.Result, error) {
			if q.Attempt == 2 {
				close(hanging)
				<-gate
			}
			return acquire()
		}}, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Hour, Retry: dlock.ExponentialBackoff(time.Second, time.Second)}})
		defer l.Close()
		got := goAcquire(t.Context(), l, "k")
		synctest.Wait()
		<-hanging // within the first attempt's Wait, the second waits at the gate
		release() // hands the key to it, on its first queued attempt
		close(gate)
		r := <-got
		if r.err != nil {
			t.Fatal(r.err)
		}
		in := s.Driver().(driver.Inspector)
		mustHold(t, in, "k", r.lease.Fence(), "the grant in the channel was the lease's own hold, which must not be released")
		if err := r.lease.Release(t.Context()); err != nil {
			t.Errorf("Release of the lease = %v; want nil", err)
		}
	})
}

// timeout is a network-like error: outcome unknown, worth retrying.
type timeout struct{}

func (timeout) Error() string { return "test: reply lost" }
func (timeout) Timeout() bool { return true }

// TestHandoffUndoRotatesToken: a handoff waiter that undoes an attempt
// whose outcome is unknown goes on with a new token and subscription. The
// undo may free a grant made on an earlier queued attempt, whose Turn
// sits in the channel: with the old token, the waiter would take that
// Turn for a lease on a free key.
func TestHandoffUndoRotatesToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memdriver.NewStore()
		release := hold(t, s.Driver(), "k")
		var lost string // the token whose reply was lost
		l := dlock.New(&hooked{Locker: s.Driver(), hook: func(_ context.Context, req driver.Request, q driver.Queued, acquire func() (driver.Result, error)) (driver.Result, error) {
			if q.Attempt != 2 || lost != "" {
				return acquire()
			}
			// The release hands the key to the waiter's first queued
			// attempt; the second then finds it held by its own token,
			// and its reply is lost.
			release()
			lost = req.Token
			acquire()
			return driver.Result{}, timeout{}
		}}, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Hour, Retry: dlock.ExponentialBackoff(time.Second, time.Second)}})
		defer l.Close()
		r := <-goAcquire(t.Context(), l, "k")
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.lease.Release(t.Context())
		if lost == "" {
			t.Fatal("the hook never ran")
		}
		mustHold(t, s.Driver().(driver.Inspector), "k", r.lease.Fence(), "the lease returned must hold the key")
		if r.lease.Token() == lost {
			t.Errorf("the lease has the token whose attempt was undone; want a new one")
		}
	})
}

// noHandoff is a wrapper that cannot hand off, and says so by the rule for
// wrapping drivers.
type noHandoff struct{ hooked }

func (noHandoff) SubscribeHandoff(context.Context, string, string) (<-chan driver.Turn, func(), error) {
	return nil, nil, fmt.Errorf("test: %w", errors.ErrUnsupported)
}

// TestHandoffUnsupportedSubscribesPlainly: over a driver whose
// SubscribeHandoff answers errors.ErrUnsupported, a waiter subscribes
// plainly, and the release still wakes it at once.
func TestHandoffUnsupportedSubscribesPlainly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memdriver.NewStore()
		release := hold(t, s.Driver(), "k")
		var attempts []uint64
		d := &noHandoff{hooked{Locker: s.Driver(), hook: func(_ context.Context, req driver.Request, q driver.Queued, acquire func() (driver.Result, error)) (driver.Result, error) {
			attempts = append(attempts, q.Attempt)
			return acquire()
		}}}
		l := dlock.New(d, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Hour, Retry: dlock.ExponentialBackoff(time.Hour, time.Hour)}})
		defer l.Close()
		got := goAcquire(t.Context(), l, "k")
		synctest.Wait()
		start := time.Now()
		release()
		r := <-got
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.lease.Release(t.Context())
		if d := r.at.Sub(start); d != 0 {
			t.Errorf("the waiter got the key %v after the release; want at once: it must subscribe plainly", d)
		}
		for _, n := range attempts {
			if n != 0 {
				t.Errorf("attempts numbered %v without a handoff subscription; want all 0", attempts)
				break
			}
		}
	})
}
