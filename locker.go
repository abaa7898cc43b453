package dlock

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// Holder describes who holds a key; see [Locker.Holder].
type Holder = driver.Holder

// Locker acquires leases on keys of one backend. It owns the driver it was
// made with, and one renewal scheduler that keeps all its leases alive.
//
// A Locker is safe for concurrent use. Make one per backend and share it.
type Locker struct {
	drv      driver.Locker
	notifier driver.Notifier  // nil if the driver cannot notify
	inspect  driver.Inspector // nil if the driver cannot inspect
	cfg      settings
	err      error // bad configuration, returned by every call

	renew *renewer

	closeOnce sync.Once
	closeErr  error
}

// New returns a Locker over d. opts may be nil for the defaults.
//
// New does no I/O and never fails: a nil driver or invalid options make
// every method of the Locker return an error wrapping [ErrInvalid].
func New(d driver.Locker, opts *Options) *Locker {
	l := &Locker{drv: d}
	l.cfg, l.err = opts.resolve(nil)
	if d == nil {
		l.err = fmt.Errorf("%w: nil driver", ErrInvalid)
	}
	l.notifier, _ = d.(driver.Notifier)
	l.inspect, _ = d.(driver.Inspector)
	l.renew = newRenewer(d)
	return l
}

// Acquire takes key, waiting while it is held by someone else, until it is
// granted or ctx ends. opts may be nil; its zero fields take the Locker's
// values.
//
// While waiting, Acquire is woken by the holder's release when the backend
// can notify, and otherwise at the holder's expiry, reported by the failed
// attempt; opts.Retry caps each wait. Errors that may be transient (the
// backend unavailable, a timeout) are retried the same way. When ctx ends,
// the error wraps both [ErrNotAcquired] and ctx.Err().
func (l *Locker) Acquire(ctx context.Context, key string, opts *Options) (*Lease, error) {
	return l.acquire(ctx, key, opts, true)
}

// TryAcquire makes one attempt to take key and returns an error wrapping
// [ErrNotAcquired] if it is held.
func (l *Locker) TryAcquire(ctx context.Context, key string, opts *Options) (*Lease, error) {
	return l.acquire(ctx, key, opts, false)
}

// Do acquires key (waiting as [Locker.Acquire] does), runs fn while holding
// it, and releases it. The context passed to fn is cancelled when ctx is or
// when the lease is lost, with context.Cause reporting [ErrLeaseLost]: fn
// must stop then, because someone else may hold the key soon.
//
// The release always happens, on a context detached from ctx's cancellation
// and bounded by opts.ReleaseTimeout. Do returns fn's error joined with the
// release's; if the lease was lost before the release, that error wraps
// [ErrLeaseLost] even if fn succeeded, since exclusivity was not assured to
// the end.
func (l *Locker) Do(ctx context.Context, key string, opts *Options, fn func(ctx context.Context, lease *Lease) error) error {
	if fn == nil {
		return fmt.Errorf("%w: nil function", ErrInvalid)
	}
	lease, err := l.Acquire(ctx, key, opts)
	if err != nil {
		return err
	}
	fctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(lease.ctx, func() { cancel(context.Cause(lease.ctx)) })
	ferr := fn(fctx, lease)
	stop()
	cancel(nil)
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), lease.releaseTimeout)
	defer rcancel()
	return errors.Join(ferr, lease.Release(rctx))
}

// Holder reports who holds key; ok is false when it is free. It returns an
// error wrapping errors.ErrUnsupported if the driver cannot inspect locks.
func (l *Locker) Holder(ctx context.Context, key string) (h Holder, ok bool, err error) {
	if err := l.check(key); err != nil {
		return h, false, err
	}
	if l.inspect == nil {
		return h, false, fmt.Errorf("dlock: driver %T cannot report holders: %w", l.drv, errors.ErrUnsupported)
	}
	return l.inspect.Inspect(ctx, key)
}

// Close releases every lease still held (within the ReleaseTimeout), stops
// renewal and closes the driver. Leases it ends are lost with a cause
// wrapping [ErrClosed]. Later calls return [ErrClosed].
func (l *Locker) Close() error {
	if l.drv == nil {
		return l.err
	}
	l.closeOnce.Do(func() {
		leases := l.renew.close()
		ctx, cancel := context.WithTimeout(context.Background(), l.cfg.releaseTimeout)
		defer cancel()
		var errs []error
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, le := range leases {
			lost := fmt.Errorf("%w: %q: %w", ErrLeaseLost, le.key, ErrClosed)
			le.cancel(lost)
			if le.obs.enabled() {
				le.obs.emit(le.ctx, le.event(EventLost, time.Since(le.acquired), lost), 0)
			}
			wg.Go(func() {
				if err := l.drv.Release(ctx, le.key, le.token); err != nil && !errors.Is(err, ErrNotHeld) {
					mu.Lock()
					errs = append(errs, fmt.Errorf("dlock: release %q: %w", le.key, err))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		errs = append(errs, l.drv.Close())
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// check reports configuration errors, a bad key and use after Close, all
// before any I/O.
func (l *Locker) check(key string) error {
	if l.err != nil {
		return l.err
	}
	if err := checkKey(key); err != nil {
		return err
	}
	if l.renew.isClosed() {
		return ErrClosed
	}
	return nil
}

func (l *Locker) acquire(ctx context.Context, key string, opts *Options, wait bool) (*Lease, error) {
	if err := l.check(key); err != nil {
		return nil, err
	}
	cfg, err := opts.resolve(&l.cfg)
	if err != nil {
		return nil, err
	}
	if !cfg.obs.enabled() {
		return l.attempts(ctx, key, cfg, wait)
	}
	start := time.Now()
	lease, err := l.attempts(ctx, key, cfg, wait)
	e := Event{Kind: EventNotAcquired, Key: key, Owner: cfg.owner, Duration: time.Since(start), Err: err}
	if err == nil {
		e.Kind, e.Fence = EventGranted, lease.fence
	}
	cfg.obs.emit(ctx, e, 0)
	return lease, err
}

// attempts tries to acquire key until it succeeds, or, if wait, until the
// retry strategy gives up or ctx ends.
func (l *Locker) attempts(ctx context.Context, key string, cfg settings, wait bool) (*Lease, error) {
	req := driver.Request{Key: key, Token: rand.Text(), TTL: cfg.ttl, Owner: cfg.owner}

	var released <-chan struct{} // release notifications, once subscribed
	var unsubscribe func()
	subscribed := false
	defer func() {
		if unsubscribe != nil {
			unsubscribe()
		}
	}()
	var timer *time.Timer
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, notAcquired(key, ctx, nil)
		}
		// A waiter says how long it may sleep after this attempt, so
		// that a driver that queues waiters keeps its place meanwhile.
		backoff, more := time.Duration(0), false
		if wait {
			backoff, more = cfg.retry.Backoff(attempt)
		}
		req.Wait = 0
		if more {
			req.Wait = max(backoff, time.Millisecond)
		}
		sent := time.Now()
		res, err := l.drv.Acquire(ctx, req)
		if err == nil && res.Acquired {
			if time.Now().Before(sent.Add(req.TTL - cfg.drift)) {
				lease, err := l.renew.add(ctx, l, req, res.Fence, sent, cfg)
				if err != nil { // closed meanwhile
					l.abandon(ctx, req, cfg)
					return nil, err
				}
				return lease, nil
			}
			// The grant arrived after its own deadline: the backend
			// may free the key any moment, if it has not already.
			l.abandon(ctx, req, cfg)
			err = errLateGrant
		}
		if err != nil && (ctx.Err() != nil || !retryable(err)) {
			return nil, notAcquired(key, ctx, err)
		}
		if err == nil && cfg.obs.enabled() {
			cfg.obs.emit(ctx, Event{Kind: EventBusy, Key: key, Owner: cfg.owner}, 0)
		}
		if !wait {
			return nil, notAcquired(key, ctx, err)
		}
		// Subscribe after the first failed attempt, not before it: an
		// uncontended acquire then costs one round trip. The attempt
		// that follows a new subscription runs at once, so a release
		// between the two is not missed.
		if l.notifier != nil && !subscribed && err == nil {
			subscribed = true
			var serr error
			released, unsubscribe, serr = l.notifier.Subscribe(ctx, key, req.Token)
			if serr == nil {
				attempt--
				continue
			}
			if ctx.Err() != nil {
				return nil, notAcquired(key, ctx, serr)
			}
			released, unsubscribe = nil, nil // fall back to expiry hints and backoff
		}
		if !more {
			return nil, notAcquired(key, ctx, err)
		}
		d := jitter(backoff)
		if res.HolderTTL > 0 && res.HolderTTL < d {
			d = res.HolderTTL
		}
		if timer == nil {
			timer = time.NewTimer(d)
			defer timer.Stop()
		} else {
			timer.Reset(d)
		}
		select {
		case <-released:
		case <-timer.C:
		case <-ctx.Done():
			return nil, notAcquired(key, ctx, err)
		}
	}
}

// errLateGrant reports a grant that arrived too late to be used.
var errLateGrant = fmt.Errorf("%w: the grant arrived after the lease's deadline; the backend is too slow for the TTL", ErrUnavailable)

// abandon releases a grant that will not become a lease.
func (l *Locker) abandon(ctx context.Context, req driver.Request, cfg settings) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.releaseTimeout)
	defer cancel()
	l.drv.Release(ctx, req.Key, req.Token)
}

// notAcquired builds Acquire's error: ErrNotAcquired, the last driver error
// if any, and ctx.Err() if ctx ended.
func notAcquired(key string, ctx context.Context, last error) error {
	err := fmt.Errorf("%w: %q", ErrNotAcquired, key)
	if last != nil {
		err = fmt.Errorf("%w: %w", err, last)
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = errors.Join(err, cerr)
	}
	return err
}

// retryable reports whether a driver error may go away on its own: the
// backend was unreachable, or a call timed out. Acquire is safe to repeat
// with the same token, so both are retried; other errors (a wrong password,
// a key of the wrong type) are returned at once.
func retryable(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, ErrUnavailable) || errors.As(err, &t) && t.Timeout()
}
