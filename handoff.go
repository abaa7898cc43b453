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
// handoff if the driver offers it, for a lock only (a semaphore's waiters
// are woken all at once), and plainly otherwise, also when a wrapping
// driver answers errors.ErrUnsupported for handoff. A lock's waiters may be
// woken in turn by their token; a semaphore's subscribe without one, so
// that every release wakes them all (several slots may be free, and a
// waiter woken alone might not take the one freed).
func (l *Locker) subscribe(ctx context.Context, key, token string, lock bool) (waitSub, error) {
	if l.handoff != nil && lock {
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

// next numbers the attempt about to be sent at now, if the subscription
// hands off: it returns the attempt's number, and zero for a plain
// subscription or none.
func (s *waitSub) next(now time.Time) uint64 {
	if s.turns == nil {
		return 0
	}
	s.attempt++
	s.sent[s.attempt] = now
	delete(s.sent, s.attempt-keptAttempts)
	return s.attempt
}

// unsubscribe ends the waiter's subscription, if any, and looks at what its channel still holds:
// after cancel, a handoff driver has put there every grant it made to the
// token (or one it may have made: see driver.Handoff). A grant there is
// released (on a detached context, bounded by the ReleaseTimeout), unless
// kept holds the same token: a waiter whose own attempt returned its
// lease finds there the grant of that same hold. It reports whether the
// channel held a plain wake-up, which may have been this waiter's turn,
// and, as stuck, the error of a release of a grant that failed: the key
// may then stay held by the token until its TTL.
func (w *waiter) unsubscribe(ctx context.Context, kept *Lease) (woken bool, stuck error) {
	s := &w.sub
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
			if err := w.release(ctx, s.token); err != nil && !errors.Is(err, ErrNotHeld) {
				return false, err
			}
		}
	default:
	}
	return false, nil
}

// errGrantStuck and errUndoStuck end the error of a call that returns
// without a lease while a grant it was handed, or may have been, could
// not be released, or an attempt it undid may have been granted and the
// undo failed: the cases where such a call leaves the key held.
const (
	errGrantStuck = "; a grant it was (or may have been) handed as it stopped waiting could not be released, outcome unknown: the key may stay held until its TTL (release: %v)"
	errUndoStuck  = "; an attempt that may have been granted could not be undone: the key may stay held until its TTL (release: %v)"
)

// passTurn is called by a lock's waiter that gives up with a release
// notification unused (see waiter.end): a driver that queues waiters may
// have woken it alone, for its turn. It makes the attempt the turn was
// for, on a detached context, and undoes it, so that the release that the
// undo makes wakes the next waiter.
func (w *waiter) passTurn(ctx context.Context) {
	if !w.lock() {
		return // slot waiters are woken all at once, never in turn
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.releaseTimeout)
	defer cancel()
	req := w.req
	if res, err := w.l.drv.Acquire(ctx, req); err == nil && res.Acquired || driver.OutcomeUnknown(err) {
		w.l.drv.Release(ctx, req.Key, req.Token)
	}
}
