package dlock

import (
	"context"
	"errors"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// waitSub is a waiter's subscription to the releases of its key: a plain
// one (released), or, over a [driver.Handoff], one whose turns may also
// hand it the key. The zero value is no subscription.
//
// A handed-off lease counts from the send time of the attempt the Turn
// names (kept in sent); [driver.Handoff] argues why that is safe.
type waitSub struct {
	released <-chan struct{}
	turns    <-chan driver.Turn
	cancel   func()
	token    string               // the token it was made with
	attempt  uint64               // handoff: the last attempt's number
	sent     map[uint64]time.Time // handoff: when recent attempts were sent
}

// keptAttempts is how many of its last attempts a handoff waiter keeps the
// send times of. A grant names the attempt the backend queued last; as a
// waiter's attempts are sequential, that is its last one, or an earlier
// one when those after it failed on the way. A grant on an attempt
// forgotten is abandoned, as a late one.
const keptAttempts = 4

// subscribe subscribes to key's releases for the waiter with token: with
// handoff if the driver offers it, for locks only (a semaphore's waiters
// are woken all at once), and plainly otherwise, also when a wrapping
// driver answers errors.ErrUnsupported for handoff.
func (l *Locker) subscribe(ctx context.Context, key, token string, cfg settings) (waitSub, error) {
	if l.handoff != nil && cfg.sem == nil {
		turns, cancel, err := l.handoff.SubscribeHandoff(ctx, key, token)
		if err == nil {
			return waitSub{turns: turns, cancel: cancel, token: token, sent: make(map[uint64]time.Time)}, nil
		}
		if !errors.Is(err, errors.ErrUnsupported) {
			return waitSub{}, err
		}
	}
	released, cancel, err := l.notifier.Subscribe(ctx, key)
	if err != nil {
		return waitSub{}, err
	}
	return waitSub{released: released, cancel: cancel, token: token}, nil
}

// attempt makes one attempt of a waiter subscribed as s, sent at sent,
// which tries again within wait (zero: it does not): a queued one
// (driver.Handoff.AcquireQueued) numbered with the subscription's next
// attempt number if s hands off, and a plain one otherwise.
func (l *Locker) attempt(ctx context.Context, s *waitSub, req driver.Request, wait time.Duration, sent time.Time, cfg settings) (driver.Result, error) {
	if s.turns == nil {
		return cfg.sem.acquireCall(ctx, l.drv, req)
	}
	s.attempt++
	s.sent[s.attempt] = sent
	delete(s.sent, s.attempt-keptAttempts)
	return l.handoff.AcquireQueued(ctx, req, driver.Queued{Wait: wait, Attempt: s.attempt})
}

// unsubscribe ends s, if any, and looks at what its channel still holds:
// after cancel, a handoff driver has put there every grant it made to the
// token (or one it may have made: see driver.Handoff). A grant there is
// released (on a detached context, bounded by the ReleaseTimeout), unless
// kept holds the same token: a waiter whose own attempt returned its
// lease finds there the grant of that same hold. It reports whether the
// channel held a plain wake-up, which may have been this waiter's turn,
// and, as stuck, the error of a release of a grant that failed: the key
// may then stay held by the token until its TTL.
func (l *Locker) unsubscribe(ctx context.Context, s *waitSub, key string, cfg settings, kept *Lease) (woken bool, stuck error) {
	if s.cancel == nil {
		return false, nil
	}
	s.cancel() // no turn comes after it
	defer func() { *s = waitSub{} }()
	select {
	case <-s.released:
		return true, nil
	case t := <-s.turns:
		if !t.Granted {
			return true, nil
		}
		if kept == nil || kept.token != s.token {
			req := driver.Request{Key: key, Token: s.token}
			if err := l.release(ctx, req, cfg); err != nil && !errors.Is(err, ErrNotHeld) {
				return false, err
			}
		}
	default:
	}
	return false, nil
}

// errGrantStuck ends the error of a waiting call that returns without a
// lease while a grant it was handed, or may have been, could not be
// released: the one case where such a call leaves the key held.
const errGrantStuck = "; a grant it was (or may have been) handed as it stopped waiting could not be released, outcome unknown: the key may stay held until its TTL (release: %v)"

// release releases the token of req as abandon does, and returns the
// release's error.
func (l *Locker) release(ctx context.Context, req driver.Request, cfg settings) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.releaseTimeout)
	defer cancel()
	return cfg.sem.releaseCall(ctx, l.drv, req.Key, req.Token)
}

// leaseOf makes a lease of the grant of req.Token with fence, counted
// from sent, the send time of the attempt granted. A grant that came after
// its own deadline (the backend may free the key any moment) is abandoned
// and reported as errLateGrant; one that came as the Locker closed is
// abandoned too. known reports whether the outcome of such an abandon is
// known; ttlCap is as renewer.add's.
func (l *Locker) leaseOf(ctx context.Context, req driver.Request, fence uint64, sent time.Time, cfg settings, ttlCap time.Duration) (lease *Lease, known bool, err error) {
	if !time.Now().Before(sent.Add(req.TTL - cfg.drift)) {
		return nil, l.abandon(ctx, req, cfg), errLateGrant
	}
	lease, err = l.renew.add(ctx, l, req, fence, sent, cfg, ttlCap)
	if err != nil { // closed meanwhile
		return nil, l.abandon(ctx, req, cfg), err
	}
	return lease, true, nil
}
