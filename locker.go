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
	handoff  driver.Handoff   // nil if the driver cannot hand off
	inspect  driver.Inspector // nil if the driver cannot inspect
	cfg      settings
	err      error // bad configuration, returned by every call

	renew *renewer

	// Calls in progress (Acquire, and Release and Refresh of a lease), so
	// that Close lets them reach the driver, and an acquire's undo too,
	// before closing it.
	callMu  sync.Mutex
	calls   int
	drained chan struct{} // closed when calls drops to 0 after Close began

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
	l.handoff, _ = d.(driver.Handoff)
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
// attempt; opts.Retry caps each wait. A backend that hands off
// ([driver.Handoff]) grants the key to the first waiter within the release
// itself (see the package documentation, Waiting and handoff). Errors that
// may be transient (the backend unavailable, a timeout) are retried the
// same way. When ctx ends, the error wraps ctx.Err() and says why the
// key was not granted so far: [ErrNotAcquired] if the last answer was that
// it is held, [ErrUnavailable] if the backend was failing, neither if no
// attempt was answered. Errors that retrying cannot cure (misuse such as
// [ErrWrongKind], a missing capability, a refused password) are returned
// at once. See Errors in the package documentation.
//
// An attempt whose outcome is unknown (it timed out, the connection was
// lost, ctx ended while it was in flight, as [driver.OutcomeUnknown] tells,
// or the Locker was closed while it was granted) is undone at once: the attempt's token is released on a
// context detached from ctx, bounded by the ReleaseTimeout. A grant that no
// caller received therefore never keeps the key from others for a TTL.
// Acquire returns only after that undo, so when it fails, it holds nothing,
// unless the undo itself failed, which the error then says ("the key may
// stay held until its TTL").
// If the undo's own outcome is unknown, later attempts use a new token, so
// that the undo, should it reach the backend late, cannot free the key
// under a lease they were granted.
func (l *Locker) Acquire(ctx context.Context, key string, opts *Options) (*Lease, error) {
	return l.acquire(ctx, key, opts, true)
}

// TryAcquire makes one attempt to take key and returns an error wrapping
// [ErrNotAcquired] if it is held, and one wrapping [ErrUnavailable], never
// ErrNotAcquired, if the backend failed. Like Acquire, it undoes an attempt
// whose outcome is unknown before it returns.
func (l *Locker) TryAcquire(ctx context.Context, key string, opts *Options) (*Lease, error) {
	return l.acquire(ctx, key, opts, false)
}

// Do acquires key (waiting as [Locker.Acquire] does), runs fn while holding
// it, and releases it. The context passed to fn is cancelled when ctx is or
// when the lease is lost, with context.Cause reporting [ErrLeaseLost]: fn
// must stop then, because someone else may hold the key soon. Like
// [Lease.Context], its Err and Done report the loss at the first look after
// the lease's local deadline, even before the renewal goroutine runs.
//
// The release always happens, on a context detached from ctx's cancellation
// and bounded by opts.ReleaseTimeout: also when fn panics, before the panic
// goes on. Do returns fn's error joined with the release's; if the lease was
// lost before the release (also by [Locker.Close]), that error wraps
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
	return runHeld(ctx, lease, fn)
}

// runHeld is the rest of Do once lease is held: it runs fn and releases.
func runHeld(ctx context.Context, lease *Lease, fn func(ctx context.Context, lease *Lease) error) error {
	// The lease's deadline is fctx's, so that fn sees a loss at its first
	// look after the deadline, as with Lease.Err (after a pause, say).
	fctx, cancel := lease.WithMargin(ctx, 0)
	returned := false
	defer func() {
		if !returned { // fn panicked: free the key, and let the panic go on
			cancel()
			finish(ctx, lease)
		}
	}()
	ferr := fn(fctx, lease)
	returned = true
	cancel()
	return errors.Join(ferr, finish(ctx, lease))
}

// finish releases lease on a context detached from ctx's cancellation,
// bounded by the lease's ReleaseTimeout. Its error wraps [ErrLeaseLost] if
// the lease was lost before, whoever ended it.
func finish(ctx context.Context, lease *Lease) error {
	rctx, cancel := context.WithTimeout(detached(ctx), lease.releaseTimeout)
	defer cancel()
	err := lease.Release(rctx)
	if lost := lease.Err(); errors.Is(lost, ErrLeaseLost) && !errors.Is(err, ErrLeaseLost) {
		err = lost
	}
	return err
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
	h, ok, err = l.inspect.Inspect(ctx, key)
	if err != nil && ctx.Err() != nil {
		err = ended(ctx, fmt.Errorf("dlock: holder of %q", key), err)
	}
	return h, ok, err
}

// Close releases every lease still held (within the ReleaseTimeout), stops
// renewal and closes the driver. Leases it ends are lost with a cause
// wrapping [ErrClosed]. Acquire calls still waiting return an error wrapping
// [ErrClosed] (and [ErrNotAcquired] if the key was held); Close waits for
// those in flight (within the ReleaseTimeout) so that a grant that races it
// is released before the driver closes, and for the calls of
// [Lease.Release] and [Lease.Refresh] in flight, so that a release is not
// cut short. Later calls return [ErrClosed].
func (l *Locker) Close() error {
	if l.drv == nil {
		return l.err
	}
	l.closeOnce.Do(func() {
		// Lost, not released by their holders: a later Lease.Release
		// says so (ErrLeaseLost) and makes one more token-checked
		// Release, harmless.
		leases := l.renew.close()
		ctx, cancel := context.WithTimeout(context.Background(), l.cfg.releaseTimeout)
		defer cancel()
		var errs []error
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, le := range leases {
			wg.Go(func() {
				if err := le.releaseCall(ctx); err != nil && !errors.Is(err, ErrNotHeld) {
					mu.Lock()
					errs = append(errs, fmt.Errorf("dlock: release %q: %w", le.key, err))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		l.drain(ctx)
		errs = append(errs, l.drv.Close())
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// enter counts an Acquire call in progress; it reports false once Close
// has begun.
func (l *Locker) enter() bool {
	l.callMu.Lock()
	defer l.callMu.Unlock()
	if l.renew.isClosed() {
		return false
	}
	l.calls++
	return true
}

// track counts a call of a lease in progress (Release, Refresh), also
// once Close has begun: Close waits for it before closing the driver. A
// call tracked after Close drained finds the driver closed.
func (l *Locker) track() {
	l.callMu.Lock()
	l.calls++
	l.callMu.Unlock()
}

// leave ends what enter or track began.
func (l *Locker) leave() {
	l.callMu.Lock()
	defer l.callMu.Unlock()
	l.calls--
	if l.calls == 0 && l.drained != nil {
		close(l.drained)
		l.drained = nil
	}
}

// drain waits until no call is in progress, or ctx ends. Close calls it
// after marking the renewer closed, so no Acquire enters meanwhile; a
// lease's Release or Refresh that began before is counted already (it
// counts itself before it leaves the renewer).
func (l *Locker) drain(ctx context.Context) {
	l.callMu.Lock()
	if l.calls == 0 {
		l.callMu.Unlock()
		return
	}
	if l.drained == nil {
		l.drained = make(chan struct{})
	}
	drained := l.drained
	l.callMu.Unlock()
	select {
	case <-drained:
	case <-ctx.Done():
	}
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
	return l.acquireKind(ctx, key, opts, wait, nil, nil)
}

// acquireKind is acquire of a lock (sem nil) or of a slot of sem. onBusy,
// if not nil, is called after each attempt that found the key held (an
// election looks up the new leader then).
func (l *Locker) acquireKind(ctx context.Context, key string, opts *Options, wait bool, sem *Semaphore, onBusy func(context.Context)) (*Lease, error) {
	if err := l.check(key); err != nil {
		return nil, err
	}
	cfg, err := opts.resolve(&l.cfg)
	if err != nil {
		return nil, err
	}
	cfg.sem, cfg.onBusy = sem, onBusy
	if !cfg.obs.enabled() {
		return l.attempts(ctx, key, cfg, wait)
	}
	start := time.Now()
	lease, err := l.attempts(ctx, key, cfg, wait)
	e := Event{Kind: EventNotAcquired, Key: key, Owner: cfg.owner, Limit: sem.limitOf(), Duration: time.Since(start), Err: err}
	if err == nil {
		e.Kind, e.Fence = EventGranted, lease.fence
	}
	cfg.obs.emit(ctx, e, 0)
	if lease != nil {
		l.renew.granted(lease)
	}
	return lease, err
}

// attempts tries to acquire key until it succeeds, or, if wait, until the
// retry strategy gives up or ctx ends. It returns holding nothing unless it
// returns a lease: an attempt that may have been granted unseen is undone
// at once (see undo).
func (l *Locker) attempts(ctx context.Context, key string, cfg settings, wait bool) (lease *Lease, err error) {
	if !l.enter() {
		return nil, ErrClosed
	}
	defer l.leave()
	req := driver.Request{Key: key, Token: rand.Text(), TTL: cfg.ttl, Owner: cfg.owner, NoFence: cfg.noFence && cfg.sem == nil}

	var sub waitSub     // release notifications, once subscribed
	subscribed := false // a subscription was tried for req.Token
	defer func() {
		// A turn that came as this waiter gave up (its ctx ended, its
		// retries ran out, the Locker closed), unused: pass it on, or
		// the next waiter sleeps until its backoff. A grant is
		// released, unless it is the lease returned. Both before the
		// call returns: when it returns without a lease, no token of
		// it holds the key.
		woken, stuck := l.unsubscribe(ctx, &sub, key, cfg, lease)
		if woken && lease == nil {
			l.passTurn(ctx, req, cfg)
		}
		if stuck != nil && err != nil {
			err = fmt.Errorf("%w"+errGrantStuck, err, stuck)
		}
	}()
	var timer *time.Timer
	st := acquireState{limit: cfg.sem.limitOf()} // why no lease was granted, so far
	// unsure: an attempt with req.Token had an unknown outcome; it may
	// land later, even on the lease a later attempt returns, and set the
	// key's expiry back to req.TTL then.
	unsure := false
	ttlCap := func() time.Duration {
		if unsure {
			return req.TTL
		}
		return 0
	}
	woken := false // the last wait ended with a release notification
	// subRetry: the wait before subscribing again after a transient
	// failure, doubled at each in a row.
	var subRetry time.Duration
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			if woken {
				l.passTurn(ctx, req, cfg)
			}
			return nil, st.gaveUp(ctx, key)
		}
		woken = false
		// A waiter says how long it may sleep after this attempt, so
		// that a driver that queues waiters keeps its place meanwhile.
		backoff, more := time.Duration(0), false
		if wait {
			backoff, more = cfg.retry.Backoff(attempt)
		}
		var waitFor time.Duration
		if more {
			waitFor = max(backoff, time.Millisecond)
		}
		sent := time.Now()
		res, err := l.attempt(ctx, &sub, req, waitFor, sent, cfg)
		// abandoned: the token was released, as it will not become a
		// lease; known: that release's outcome is known.
		abandoned, known := false, true
		if err == nil && res.Acquired {
			lease, known, err = l.leaseOf(ctx, req, res.Fence, sent, cfg, ttlCap())
			if err == nil {
				return lease, nil
			}
			if !errors.Is(err, errLateGrant) {
				return nil, failed(key, err)
			}
			abandoned = true
		} else if driver.OutcomeUnknown(err) {
			// Undone before anything else, so that the key is not
			// kept from others by a grant nobody received: not while
			// this call sleeps its backoff, and not after it returns.
			unsure, abandoned = true, true
			known = l.abandon(ctx, req, cfg)
		}
		// A later attempt with the same token may take the key again,
		// unless the undo's own outcome is unknown: that release may
		// still reach the backend after a later attempt's grant and
		// free the key under the lease it returned. Later attempts then
		// use a new token, which it cannot touch (at worst they wait
		// for the old grant's expiry). A handoff waiter takes a new
		// token after any undo: a grant made on one of its queued
		// attempts may sit in its channel, and the undo may have freed
		// it.
		if abandoned && (!known || sub.turns != nil) {
			req.Token, unsure = rand.Text(), false
		}
		if req.Token != sub.token && sub.cancel != nil {
			// A driver that queues waiters knows them by token.
			l.unsubscribe(ctx, &sub, key, cfg, nil)
			subscribed = false
		}
		st.note(ctx, err)
		if err != nil && ctxEnded(ctx) != nil {
			return nil, st.gaveUp(ctx, key)
		}
		if err != nil && !retryable(err) {
			return nil, failed(key, err)
		}
		if err == nil && cfg.obs.enabled() {
			cfg.obs.emit(ctx, Event{Kind: EventBusy, Key: key, Owner: cfg.owner, Limit: cfg.sem.limitOf()}, 0)
		}
		if err == nil && cfg.onBusy != nil {
			cfg.onBusy(ctx)
		}
		if !wait {
			return nil, st.gaveUp(ctx, key)
		}
		// Subscribe after the first failed attempt, not before it: an
		// uncontended acquire then costs one round trip. The attempt
		// that follows a new subscription runs at once, so a release
		// between the two is not missed.
		resubscribe := false
		if l.notifier != nil && !subscribed && err == nil {
			subscribed = true
			var serr error
			sub, serr = l.subscribe(ctx, key, req.Token, cfg)
			if serr == nil {
				attempt--
				subRetry = 0
				continue
			}
			if ctx.Err() != nil {
				return nil, st.gaveUp(ctx, key)
			}
			// Fall back to expiry hints and backoff; a failure that
			// may go away (a pub/sub blip) is tried again soon, not
			// left to make this waiter a poller to the end.
			if retryable(serr) {
				subscribed, resubscribe = false, true
				subRetry = min(max(2*subRetry, minSubRetry), maxSubRetry)
			}
		}
		if !more {
			return nil, st.gaveUp(ctx, key)
		}
		d := jitter(backoff)
		if res.HolderTTL > 0 && res.HolderTTL < d {
			d = res.HolderTTL
		}
		if resubscribe {
			d = min(d, subRetry)
		}
		if timer == nil {
			timer = time.NewTimer(d)
			defer timer.Stop()
		} else {
			timer.Reset(d)
		}
		select {
		case <-sub.released:
			woken = true
		case t := <-sub.turns:
			if !t.Granted {
				woken = true
				break
			}
			// Handed the key on a queued attempt: the lease counts
			// from that attempt's send time (see waitSub). A grant on
			// an attempt forgotten is abandoned as a late one.
			lease, _, err = l.leaseOf(ctx, req, t.Fence, sub.sent[t.Attempt], cfg, ttlCap())
			if err == nil {
				return lease, nil
			}
			if !errors.Is(err, errLateGrant) {
				return nil, failed(key, err)
			}
			// The token was released: go on with a new one.
			st.note(ctx, err)
			req.Token, unsure = rand.Text(), false
			l.unsubscribe(ctx, &sub, key, cfg, nil)
			subscribed = false
		case <-timer.C:
		case <-ctx.Done():
			return nil, st.gaveUp(ctx, key)
		case <-l.renew.ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrClosed, st.gaveUp(ctx, key))
		}
	}
}

// minSubRetry and maxSubRetry bound the wait of a waiter whose
// subscription failed transiently before it attempts and subscribes
// again: soon after a blip, and at most once a second in an outage of
// pub/sub alone.
const (
	minSubRetry = 20 * time.Millisecond
	maxSubRetry = time.Second
)

// errLateGrant reports a grant that arrived too late to be used.
var errLateGrant = fmt.Errorf("%w: the grant arrived after the lease's deadline; the backend is too slow for the TTL", ErrUnavailable)

// abandon releases the token of req, which will not become a lease: a
// grant that came too late or may have been applied unseen. It runs on a
// context detached from ctx's cancellation, bounded by the ReleaseTimeout.
// ErrNotHeld means nothing was granted, and a failure leaves the grant, if
// any, to expire. It reports whether the release's outcome is known: if
// not, the release may still reach the backend later.
func (l *Locker) abandon(ctx context.Context, req driver.Request, cfg settings) (known bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.releaseTimeout)
	defer cancel()
	return !driver.OutcomeUnknown(cfg.sem.releaseCall(ctx, l.drv, req.Key, req.Token))
}

// passTurn is called by a waiter whose wait ended with a release
// notification and whose ctx then ended: a driver that queues waiters may
// have woken it alone, for its turn. It makes the attempt the turn was
// for, on a detached context, and undoes it, so that the release that the
// undo makes wakes the next waiter.
func (l *Locker) passTurn(ctx context.Context, req driver.Request, cfg settings) {
	if cfg.sem != nil {
		return // slot waiters are woken all at once, never in turn
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.releaseTimeout)
	defer cancel()
	if res, err := l.drv.Acquire(ctx, req); err == nil && res.Acquired || driver.OutcomeUnknown(err) {
		l.drv.Release(ctx, req.Key, req.Token)
	}
}

// acquireState is what the attempts of one acquire have established.
type acquireState struct {
	// last is the error of the last attempt that the backend answered
	// or that failed while ctx was live, nil if it found the key held;
	// tried reports whether there was one.
	last  error
	tried bool
	// cut is the error of an attempt that ctx cut short: it says nothing
	// of the key or the backend (a dial cut short by the caller's deadline
	// reads "i/o timeout"), so it is kept as text only.
	cut error
	// limit is the semaphore's limit, 0 for a lock: for messages.
	limit int
}

// held says, for messages, that key is held by others.
func (st *acquireState) held(key string) string {
	switch {
	case st.limit == 1:
		return fmt.Sprintf("the one slot of %q is held by someone else", key)
	case st.limit > 1:
		return fmt.Sprintf("all %d slots of %q are held by others", st.limit, key)
	}
	return fmt.Sprintf("%q is held by someone else", key)
}

// note records the outcome of an attempt that did not grant: err nil
// means the key was held.
func (st *acquireState) note(ctx context.Context, err error) {
	if err != nil && ctxEnded(ctx) != nil {
		st.cut = err
		return
	}
	st.last, st.tried, st.cut = err, true, nil
}

// ctxEnded returns ctx.Err(), or [context.DeadlineExceeded] once ctx's
// deadline has passed: a call cut by the deadline (a connection's i/o
// timeout, set from it) may return a moment before ctx reports it, and its
// error then says nothing of the backend.
func ctxEnded(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// gaveUp builds the error of an acquire that ends without a lease:
//   - the key was held: [ErrNotAcquired], and ctx.Err() if ctx ended;
//   - the backend failed: [ErrUnavailable] and the failure, and ctx.Err()
//     if ctx ended;
//   - ctx ended before any attempt was answered: ctx.Err() alone, since
//     nothing is known of the key or the backend.
//
// So errors.Is(err, ErrNotAcquired) never holds during an outage: a caller
// that skips its work when the key is busy does not skip it silently while
// the backend is down.
func (st *acquireState) gaveUp(ctx context.Context, key string) error {
	cerr := ctxEnded(ctx)
	switch {
	case !st.tried:
		if cerr == nil { // not reached: an attempt that ctx did not cut short is noted as tried
			cerr = ErrUnavailable
		}
		if st.cut != nil {
			return fmt.Errorf("dlock: acquire %q: %w before the backend answered (%v)", key, cerr, st.cut)
		}
		return fmt.Errorf("dlock: acquire %q: %w before the backend answered", key, cerr)
	case st.last == nil && cerr != nil:
		return fmt.Errorf("%w: %s; gave up waiting: %w", ErrNotAcquired, st.held(key), cerr)
	case st.last == nil:
		return fmt.Errorf("%w: %s", ErrNotAcquired, st.held(key))
	case cerr != nil:
		return fmt.Errorf("dlock: acquire %q: gave up waiting: %w; the backend was failing: %w", key, cerr, unavailable(st.last))
	}
	return fmt.Errorf("dlock: acquire %q: %w", key, unavailable(st.last))
}

// failed builds the error of an acquire ended by an error that retrying
// cannot cure: misuse (ErrInvalid, ErrWrongKind, ErrLimitMismatch), a
// missing capability (errors.ErrUnsupported), a refusal such as a wrong
// password, or Close.
func failed(key string, err error) error {
	return fmt.Errorf("dlock: acquire %q: %w", key, err)
}

// unavailable returns err, a failure that retrying may cure, wrapping
// [ErrUnavailable]: a timeout or an unknown outcome is the backend failing
// too, as far as the caller is concerned.
func unavailable(err error) error {
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// ended builds the error of a call whose ctx ended: what (which wraps
// ErrNotAcquired or the like) and ctx.Err() are in the chain, and last, the
// driver's error, only as text. The driver may blame the backend for what
// the caller's deadline did (a dial cut short reads "backend unavailable:
// dial tcp: i/o timeout"), so its sentinels must not reach errors.Is.
func ended(ctx context.Context, what, last error) error {
	cerr := ctx.Err()
	switch {
	case last == nil || errors.Is(last, ErrClosed):
		if last != nil {
			return fmt.Errorf("%w: %w: %w", what, cerr, last)
		}
		return fmt.Errorf("%w: %w", what, cerr)
	case errors.Is(last, cerr) && !errors.Is(last, ErrUnavailable):
		return fmt.Errorf("%w: %w", what, last)
	}
	return fmt.Errorf("%w: %w (last error: %v)", what, cerr, last)
}

// retryable reports whether a driver error may go away on its own: the
// backend was unreachable, or a call timed out or had an unknown outcome.
// Acquire is safe to repeat with the same token, so all are retried; other
// errors (a wrong password, a key of the wrong kind) are returned at once.
func retryable(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, ErrUnavailable) || errors.Is(err, driver.ErrOutcomeUnknown) ||
		errors.As(err, &t) && t.Timeout()
}
