package conformance

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
)

// This file checks waiting through dlock: wake-ups on release, turns,
// contention and cancellation.

// spy watches the calls of a dlock Locker to its driver, so that a case
// can act at the right moment (when a waiter is subscribed and waiting)
// instead of sleeping and hoping. It forwards Subscribe to the wrapped
// driver, or fails it with errors.ErrUnsupported.
type spy struct {
	driver.Locker

	mu         sync.Mutex
	subscribed bool
	subErr     error
	waiting    chan struct{} // closed after a busy attempt that followed a subscription
	busy       chan struct{} // closed after the first busy attempt
}

func (p *spy) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	res, err := p.Locker.Acquire(ctx, req)
	if err == nil && !res.Acquired {
		p.mu.Lock()
		closeOnce(p.busy)
		if p.subscribed {
			closeOnce(p.waiting)
		}
		p.mu.Unlock()
	}
	return res, err
}

func (p *spy) Subscribe(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	n, ok := p.Locker.(driver.Notifier)
	if !ok {
		return nil, nil, unsupported(p.Locker, "notify releases")
	}
	ch, cancel, err := n.Subscribe(ctx, key)
	p.mu.Lock()
	p.subscribed = err == nil
	if err != nil && p.subErr == nil {
		p.subErr = err
		closeOnce(p.waiting)
	}
	p.mu.Unlock()
	return ch, cancel, err
}

func newSpy(d driver.Locker) *spy {
	return &spy{Locker: d, waiting: make(chan struct{}), busy: make(chan struct{})}
}

// awaitWaiting returns once the dlock waiter behind p has subscribed and
// found the key busy since; it skips the case if the driver cannot notify.
func (s *suite) awaitWaiting(p *spy) {
	s.Helper()
	select {
	case <-p.waiting:
	case <-time.After(slack):
		s.Fatalf("a dlock waiter did not subscribe and retry within %v", slack)
	}
	p.mu.Lock()
	subErr := p.subErr
	p.mu.Unlock()
	if errors.Is(subErr, errors.ErrUnsupported) {
		s.Skipf("Subscribe: %v", subErr)
	}
	if subErr != nil {
		s.Fatalf("Subscribe failed: %v", subErr)
	}
}

func closeOnce(c chan struct{}) {
	select {
	case <-c:
	default:
		close(c)
	}
}

// acquired is the outcome of a dlock Acquire run in a goroutine.
type acquired struct {
	lease *dlock.Lease
	err   error
	at    time.Time
}

// goAcquire starts l.Acquire in a goroutine; the case waits for its result
// before it ends.
func (s *suite) goAcquire(ctx context.Context, l *dlock.Locker, key string) <-chan acquired {
	c := make(chan acquired, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		lease, err := l.Acquire(ctx, key, nil)
		c <- acquired{lease, err, time.Now()}
	})
	s.Cleanup(wg.Wait)
	return c
}

func releaseWakesWaiter(s *suite) {
	holder := s.driver()
	wd := s.rawDriver()
	if _, ok := wd.(driver.Notifier); !ok {
		wd.Close()
		s.Skipf("%T is not a driver.Notifier", wd)
	}
	p := newSpy(wd)
	// A waiter that is not woken sleeps until the holder's TTL: the retry
	// strategy alone would wait an hour.
	l := s.locker(p, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: longTTL, Retry: dlock.ExponentialBackoff(time.Hour, time.Hour)}})
	key, a := s.key("k"), token()
	f := s.mustAcquire(holder, key, a, longTTL)

	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	got := s.goAcquire(ctx, l, key)
	s.awaitWaiting(p)

	released := time.Now()
	s.mustRelease(holder, key, a)
	select {
	case r := <-got:
		if r.err != nil {
			s.Fatalf("waiter's Acquire = %v", r.err)
		}
		defer r.lease.Release(s.ctx)
		if r.lease.Fence() <= f {
			s.Errorf("waiter's fence %d is not above the released holder's %d", r.lease.Fence(), f)
		}
	case <-time.After(slack):
		s.Errorf("a waiter was not woken %v after the release (the holder's TTL was %v): Release must wake subscribers",
			time.Since(released).Round(time.Millisecond), longTTL)
		cancel()
		if r := <-got; r.lease != nil {
			r.lease.Release(s.ctx)
		}
	}
}

func waitersServedInTurn(s *suite) {
	holder := s.driver()
	if _, ok := holder.(driver.Notifier); !ok {
		s.Skipf("%T is not a driver.Notifier", holder)
	}
	key, a := s.key("k"), token()
	s.mustAcquire(holder, key, a, longTTL)
	// Waiters that are not woken sleep until the holder's TTL: the retry
	// strategy alone would wait an hour.
	opts := &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: longTTL, Retry: dlock.ExponentialBackoff(time.Hour, time.Hour)}}
	wait := func(ctx context.Context) <-chan acquired {
		p := newSpy(s.rawDriver())
		got := s.goAcquire(ctx, s.locker(p, opts), key)
		s.awaitWaiting(p)
		return got
	}
	// The first waiter gives up; a driver that queues waiters must not
	// hand it the turn of those still waiting.
	ctx, cancel := context.WithCancel(s.ctx)
	gone := wait(ctx)
	var waiters []<-chan acquired
	for range 3 {
		waiters = append(waiters, wait(s.ctx))
	}
	cancel()
	if r := <-gone; r.err == nil {
		r.lease.Release(s.ctx)
		s.Fatalf("Acquire returned a lease after its context was cancelled")
	}

	s.mustRelease(holder, key, a)
	for n := range waiters {
		released := time.Now()
		cases := make([]reflect.SelectCase, 0, len(waiters)+1)
		for _, w := range waiters {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(w)})
		}
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(time.After(slack))})
		i, v, _ := reflect.Select(cases)
		if i == len(waiters) {
			s.Fatalf("%d of %d waiters got the key, then none %v after a release (the holder's TTL was %v): a release must wake a waiter that still waits",
				n, len(waiters), time.Since(released).Round(time.Millisecond), longTTL)
		}
		r := v.Interface().(acquired)
		if r.err != nil {
			s.Fatalf("waiter's Acquire = %v", r.err)
		}
		waiters[i] = nil // a nil channel is never ready
		if err := r.lease.Release(s.ctx); err != nil {
			s.Fatalf("Release = %v", err)
		}
	}
}

func contendedNoOverlap(s *suite) {
	const clients, perClient, rounds = 4, 2, 3
	key := s.key("k")
	opts := &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 10 * time.Second, Retry: dlock.ExponentialBackoff(50*time.Millisecond, 50*time.Millisecond)}}
	var inside, done atomic.Int32
	var last atomic.Uint64
	var any atomic.Bool
	var wg sync.WaitGroup
	for range clients {
		l := s.locker(s.rawDriver(), opts)
		for range perClient {
			wg.Go(func() {
				for range rounds {
					err := l.Do(s.ctx, key, nil, func(ctx context.Context, lease *dlock.Lease) error {
						if n := inside.Add(1); n != 1 {
							s.Errorf("%d holders of %q at once: mutual exclusion broken", n, key)
						}
						f := lease.Fence()
						if prev := last.Swap(f); any.Swap(true) && f <= prev {
							s.Errorf("fence %d granted after fence %d: fences must increase", f, prev)
						}
						sleep(ctx, time.Millisecond)
						inside.Add(-1)
						return nil
					})
					if err != nil {
						s.Errorf("Do: %v; every contender must get the key eventually", err)
						return
					}
					done.Add(1)
				}
			})
		}
	}
	wg.Wait()
	if n := done.Load(); n != clients*perClient*rounds {
		s.Errorf("%d of %d critical sections ran", n, clients*perClient*rounds)
	}
}

func cancelWhileWaiting(s *suite) {
	holder := s.driver()
	p := newSpy(s.rawDriver())
	l := s.locker(p, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: longTTL}})
	key, a := s.key("k"), token()
	s.mustAcquire(holder, key, a, longTTL)

	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	got := s.goAcquire(ctx, l, key)
	select {
	case <-p.busy:
	case <-time.After(slack):
		s.Fatalf("the dlock waiter made no attempt within %v", slack)
	}
	cancel()
	cancelled := time.Now()
	select {
	case r := <-got:
		if r.lease != nil {
			r.lease.Release(s.ctx)
			s.Fatalf("Acquire of a held key returned a lease after its context was cancelled")
		}
		if !errors.Is(r.err, dlock.ErrNotAcquired) || !errors.Is(r.err, context.Canceled) {
			s.Errorf("Acquire cancelled while waiting = %v; want an error wrapping ErrNotAcquired and context.Canceled", r.err)
		}
	case <-time.After(slack):
		s.Fatalf("Acquire still waiting %v after its context was cancelled", time.Since(cancelled).Round(time.Millisecond))
	}
	s.mustRelease(holder, key, a)
}
