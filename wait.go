package dlock

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// A waiter is one acquire of a key: it tries to take it, subscribes once
// to its releases after the first busy answer, sleeps between attempts,
// and gives up when its ctx ends, its retries run out or the Locker
// closes. Giving up ([waiter.end]) passes on a turn it was woken for,
// unsubscribes and releases a grant it was handed: when it returns
// without a lease, no token of it holds the key.
type waiter struct {
	l      *Locker
	cfg    settings
	ops    keyOps
	wait   bool                  // Acquire: attempt until granted; TryAcquire: once
	onBusy func(context.Context) // see acquireWith
	req    driver.Request
	st     acquireState // why no lease was granted, so far

	sub        waitSub // release notifications, once subscribed
	subscribed bool    // a subscription was tried for req.Token
	// subRetry is the wait before subscribing again after a transient
	// failure, doubled at each in a row; resubscribe says the last
	// attempt's subscription failed so.
	subRetry    time.Duration
	resubscribe bool
	// unsure: an attempt with req.Token had an unknown outcome; it may
	// land later, even on the lease a later attempt returns, and set the
	// key's expiry back to req.TTL then.
	unsure bool
	// woken: a wait ended with a release notification, which may have
	// been this waiter's turn, and no attempt since was answered (found
	// the key held or granted it): the turn is unused, and giving up
	// passes it on.
	woken bool
	timer *time.Timer
	// stuck, if not empty, says why the key may stay held until its TTL
	// by stuckToken, a token of this waiter: the release of a grant it
	// would not use failed (see abandon, unsubscribe). An error returned
	// without a lease ends with it.
	stuck, stuckToken string
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

// attempts tries to acquire key until it succeeds, or, if wait, until the
// retry strategy gives up or ctx ends. It returns holding nothing unless it
// returns a lease: an attempt that may have been granted unseen is undone
// at once (see abandon).
func (l *Locker) attempts(ctx context.Context, key string, cfg settings, ops keyOps, wait bool, onBusy func(context.Context)) (lease *Lease, err error) {
	if !l.enter() {
		return nil, ErrClosed
	}
	defer l.leave()
	w := &waiter{l: l, cfg: cfg, ops: ops, wait: wait, onBusy: onBusy, st: acquireState{limit: ops.limit()}}
	w.req = driver.Request{Key: key, Token: rand.Text(), TTL: cfg.ttl, Owner: cfg.owner, NoFence: cfg.noFence && w.lock()}
	defer func() { err = w.end(ctx, lease, err) }()
	return w.run(ctx)
}

// lock reports whether the waiter takes a lock, not a semaphore's slot: a
// lock's waiters are queued and handed the key in turn where the driver
// can, a slot's are woken all at once by every release.
func (w *waiter) lock() bool { return w.ops.limit() == 0 }

// run attempts, subscribes and sleeps until it has a lease or gives up.
func (w *waiter) run(ctx context.Context) (*Lease, error) {
	defer func() {
		if w.timer != nil {
			w.timer.Stop()
		}
	}()
	for attempt := 1; ; attempt++ {
		backoff, more := w.plan(attempt)
		res, lease, err, end := w.try(ctx, backoff, more)
		for !end && more {
			// Subscribe after the first busy answer, not before: an
			// uncontended acquire then costs one round trip. The
			// attempt that follows a new subscription runs at once,
			// so a release between the two is not missed. A waiter
			// that will not wait (its retries ran out) does neither.
			again, serr := w.subscribe(ctx, err)
			if serr != nil {
				return nil, serr
			}
			if !again {
				break
			}
			res, lease, err, end = w.try(ctx, backoff, more)
		}
		if end {
			return lease, err
		}
		if lease, err, end := w.sleep(ctx, backoff, more, res); end {
			return lease, err
		}
	}
}

// plan returns the backoff after attempt, and whether there is one: a
// waiter says how long it may sleep after this attempt, so that a driver
// that queues waiters keeps its place meanwhile.
func (w *waiter) plan(attempt int) (time.Duration, bool) {
	if !w.wait {
		return 0, false
	}
	return w.cfg.retry.Backoff(attempt)
}

// try makes one attempt, to be followed by backoff if more. end reports that the acquire is over, with lease
// or err; otherwise err is the attempt's retryable failure, nil if the key
// was held, and res its answer.
func (w *waiter) try(ctx context.Context, backoff time.Duration, more bool) (res driver.Result, lease *Lease, err error, end bool) {
	if ctx.Err() != nil {
		return res, nil, w.st.gaveUp(ctx, w.req.Key), true
	}
	sent := time.Now()
	res, err = w.send(ctx, sent, backoff, more)
	if err == nil {
		w.woken = false // the turn was used: the attempt was answered
		if !res.Acquired && w.req.Token == w.stuckToken {
			w.stuck = "" // the busy answer says the token holds nothing
		}
	}
	// abandoned: the token was released, as it will not become a lease;
	// known: that release's outcome is known.
	abandoned, known := false, true
	if err == nil && res.Acquired {
		lease, known, err = w.leaseOf(ctx, res.Fence, sent)
		if err == nil {
			return res, lease, nil, true
		}
		if !errors.Is(err, errLateGrant) {
			return res, nil, failed(w.req.Key, err), true
		}
		abandoned = true
	} else if driver.OutcomeUnknown(err) {
		// Undone before anything else, so that the key is not kept
		// from others by a grant nobody received: not while this call
		// sleeps its backoff, and not after it returns.
		w.unsure, abandoned = true, true
		known = w.abandon(ctx)
	}
	// A later attempt with the same token may take the key again, unless
	// the undo's own outcome is unknown: that release may still reach the
	// backend after a later attempt's grant and free the key under the
	// lease it returned. Later attempts then use a new token, which it
	// cannot touch (at worst they wait for the old grant's expiry). A
	// handoff waiter takes a new token after any undo: a grant made on
	// one of its queued attempts may sit in its channel, and the undo may
	// have freed it.
	if abandoned && (!known || w.sub.turns != nil) {
		w.newToken(ctx)
	}
	w.st.note(ctx, err)
	switch {
	case err != nil && ctxEnded(ctx) != nil:
		return res, nil, w.st.gaveUp(ctx, w.req.Key), true
	case err != nil && !retryable(err):
		return res, nil, failed(w.req.Key, err), true
	}
	if err == nil {
		w.busy(ctx)
	}
	if !w.wait {
		return res, nil, w.st.gaveUp(ctx, w.req.Key), true
	}
	return res, nil, err, false
}

// send makes the attempt sent at now. A lock's waiter subscribed over a
// driver that hands off makes it a queued attempt
// ([driver.Handoff.AcquireQueued]): numbered for the handoff that may
// answer it later (see waitSub), and saying how long it may sleep after
// it, if more, so that the driver keeps its place meanwhile. This is the
// one place that builds a queued attempt.
func (w *waiter) send(ctx context.Context, now time.Time, backoff time.Duration, more bool) (driver.Result, error) {
	attempt := w.sub.next(now)
	if attempt == 0 {
		return w.ops.acquire(ctx, w.req)
	}
	var wait time.Duration
	if more {
		wait = max(backoff, time.Millisecond)
	}
	return w.l.handoff.AcquireQueued(ctx, w.req, driver.Queued{Wait: wait, Attempt: attempt})
}

// busy reports an attempt that found the key held.
func (w *waiter) busy(ctx context.Context) {
	if w.cfg.obs.enabled() {
		w.cfg.obs.emit(ctx, Event{Kind: EventBusy, Key: w.req.Key, Owner: w.cfg.owner, Limit: w.ops.limit()}, 0)
	}
	if w.onBusy != nil {
		w.onBusy(ctx)
	}
}

// newToken gives later attempts a new token, and ends a subscription
// made with the old one: a driver that queues waiters knows them by
// token.
func (w *waiter) newToken(ctx context.Context) {
	w.req.Token, w.unsure = rand.Text(), false
	if w.sub.cancel != nil {
		token := w.sub.token
		woken, stuck := w.unsubscribe(ctx, nil)
		if woken {
			w.woken = true // a turn, unused so far
		}
		if stuck != nil {
			w.stuck, w.stuckToken = fmt.Sprintf(errGrantStuck, stuck), token
		}
		w.subscribed = false
	}
}

// subscribe subscribes to the key's releases once, after an attempt
// that found it held (attemptErr nil). again reports a new subscription:
// the next attempt runs at once. A failure falls back to expiry hints and
// backoff; one that may go away (a pub/sub blip) is tried again soon, not
// left to make this waiter a poller to the end. err ends the acquire.
func (w *waiter) subscribe(ctx context.Context, attemptErr error) (again bool, err error) {
	w.resubscribe = false
	if w.l.notifier == nil || w.subscribed || attemptErr != nil {
		return false, nil
	}
	w.subscribed = true
	sub, serr := w.l.subscribe(ctx, w.req.Key, w.req.Token, w.lock())
	if serr == nil {
		w.sub, w.subRetry = sub, 0
		return true, nil
	}
	if ctx.Err() != nil {
		return false, w.st.gaveUp(ctx, w.req.Key)
	}
	if retryable(serr) {
		w.subscribed, w.resubscribe = false, true
		w.subRetry = min(max(2*w.subRetry, minSubRetry), maxSubRetry)
	}
	return false, nil
}

// sleep waits after an attempt whose answer was res for backoff, if
// more (cut short by the holder's reported expiry), a release
// notification or a handoff. end reports that the acquire is over, with lease or err.
func (w *waiter) sleep(ctx context.Context, backoff time.Duration, more bool, res driver.Result) (lease *Lease, err error, end bool) {
	if !more {
		return nil, w.st.gaveUp(ctx, w.req.Key), true
	}
	d := jitter(backoff)
	if res.HolderTTL > 0 && res.HolderTTL < d {
		d = res.HolderTTL
	}
	if w.resubscribe {
		d = min(d, w.subRetry)
	}
	if w.timer == nil {
		w.timer = time.NewTimer(d)
	} else {
		w.timer.Reset(d)
	}
	select {
	case <-w.sub.released:
		w.woken = true
	case t := <-w.sub.turns:
		if !t.Granted {
			w.woken = true
			break
		}
		return w.handed(ctx, t)
	case <-w.timer.C:
	case <-ctx.Done():
		return nil, w.st.gaveUp(ctx, w.req.Key), true
	case <-w.l.renew.ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrClosed, w.st.gaveUp(ctx, w.req.Key)), true
	}
	return nil, nil, false
}

// handed makes a lease of the key handed on a queued attempt, counted
// from that attempt's send time (see waitSub). A grant on an attempt
// forgotten is abandoned as a late one, and the waiter goes on with a new
// token.
func (w *waiter) handed(ctx context.Context, t driver.Turn) (lease *Lease, err error, end bool) {
	lease, _, err = w.leaseOf(ctx, t.Fence, w.sub.sent[t.Attempt])
	if err == nil {
		return lease, nil, true
	}
	if !errors.Is(err, errLateGrant) {
		return nil, failed(w.req.Key, err), true
	}
	w.st.note(ctx, err)
	w.newToken(ctx)
	return nil, nil, false
}

// end is the last step of every acquire, lease or not. A turn unused
// (one that came as the waiter gave up: its ctx ended, its retries ran
// out, the Locker closed; or one it was woken for whose attempt was never
// answered: cut short by ctx, or failed) is passed on, or the next waiter
// sleeps until its backoff. A grant in the subscription's channel is
// released, unless it is the lease returned. Both before the call
// returns: when it returns without a lease, no token of it holds the key.
// It returns err, saying so when such a release, or an undo, failed.
func (w *waiter) end(ctx context.Context, lease *Lease, err error) error {
	woken, stuck := w.unsubscribe(ctx, lease)
	if (woken || w.woken) && lease == nil {
		w.passTurn(ctx)
	}
	if stuck != nil {
		w.stuck = fmt.Sprintf(errGrantStuck, stuck)
	}
	if w.stuck != "" && err != nil {
		err = fmt.Errorf("%w%s", err, w.stuck)
	}
	return err
}

// leaseOf makes a lease of the grant of req.Token with fence, counted
// from sent, the send time of the attempt granted. A grant that came after
// its own deadline (the backend may free the key any moment) is abandoned
// and reported as errLateGrant; one that came as the Locker closed is
// abandoned too. known reports whether the outcome of such an abandon is
// known.
func (w *waiter) leaseOf(ctx context.Context, fence uint64, sent time.Time) (lease *Lease, known bool, err error) {
	if !time.Now().Before(sent.Add(w.req.TTL - w.cfg.drift)) {
		return nil, w.abandon(ctx), errLateGrant
	}
	var ttlCap time.Duration // see renewer.add
	if w.unsure {
		ttlCap = w.req.TTL
	}
	lease, err = w.l.renew.add(ctx, w.l, w.req, fence, sent, w.cfg, w.ops, ttlCap)
	if err != nil { // closed meanwhile
		return nil, w.abandon(ctx), err
	}
	return lease, true, nil
}

// abandon releases req.Token, which will not become a lease: a grant
// that came too late or may have been applied unseen. ErrNotHeld means
// nothing was granted, and a failure leaves the grant, if any, to expire
// (noted in stuck, for the error). It reports whether the release's
// outcome is known: if not, the release may still reach the backend
// later.
func (w *waiter) abandon(ctx context.Context) (known bool) {
	err := w.release(ctx, w.req.Token)
	switch {
	case err != nil && !errors.Is(err, ErrNotHeld):
		w.stuck, w.stuckToken = fmt.Sprintf(errUndoStuck, err), w.req.Token
	case w.req.Token == w.stuckToken:
		w.stuck = "" // the token holds nothing now
	}
	return !driver.OutcomeUnknown(err)
}

// release releases token of the key on a context detached from ctx's
// cancellation, bounded by the ReleaseTimeout.
func (w *waiter) release(ctx context.Context, token string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.releaseTimeout)
	defer cancel()
	return w.ops.release(ctx, w.req.Key, token)
}
