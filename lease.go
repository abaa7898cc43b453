package dlock

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// errReleased is a released lease's context cause.
var errReleased = fmt.Errorf("%w: released", ErrNotHeld)

// A Lease is a held key. It stays valid until [Lease.Release], or until it is
// lost: the backend reports that someone else holds the key, or renewal
// cannot be confirmed before the local deadline. Loss closes [Lease.Done]
// before the backend can grant the key to anyone else, as long as the
// backend's clock does not run faster than the Drift option allows.
//
// A Lease is safe for concurrent use.
type Lease struct {
	l              *Locker
	key            string
	token          string
	owner          string
	fence          uint64
	releaseTimeout time.Duration
	obs            observer
	acquired       time.Time // when the acquire was sent

	ctx    context.Context
	cancel context.CancelCauseFunc

	// Guarded by l.renew.mu.
	ttl, renewEvery, drift time.Duration
	deadline               time.Time // local deadline, monotonic
	nextRenew              time.Time
	refreshing             bool // a renewal round has it
	released               bool
	failures               int // consecutive failed renewals
	deadlineAt, renewAt    int // positions in the renewer's heaps, or -1
}

// Key returns the key the lease holds.
func (le *Lease) Key() string { return le.key }

// Token returns the lease's secret token: whoever knows it can release the
// key. Do not log it.
func (le *Lease) Token() string { return le.token }

// Fence returns the lease's fencing token: strictly greater than the fence
// of every earlier lease on the key from the same backend. Pass it with
// every write to a resource the lock protects; the resource remembers the
// highest fence it has seen and rejects writes with a lower one, which stops
// a holder that was paused past its lease from doing harm.
func (le *Lease) Fence() uint64 { return le.fence }

// Owner returns the owner name recorded with the lease.
func (le *Lease) Owner() string { return le.owner }

// ValidUntil returns the local deadline: the lease is lost at that moment
// unless a renewal confirms it first.
func (le *Lease) ValidUntil() time.Time {
	r := le.l.renew
	r.mu.Lock()
	defer r.mu.Unlock()
	return le.deadline
}

// Context returns a context that is cancelled when the lease ends. Its
// cause ([context.Cause]) is the lease's [Lease.Err]. It carries the values
// of the context passed to Acquire but not its cancellation.
func (le *Lease) Context() context.Context { return le.ctx }

// Done returns a channel that is closed when the lease ends.
func (le *Lease) Done() <-chan struct{} { return le.ctx.Done() }

// Err returns nil while the lease is held; after it ends, an error wrapping
// [ErrLeaseLost] if it was lost, or [ErrNotHeld] if it was released.
func (le *Lease) Err() error {
	if le.ctx.Err() == nil {
		return nil
	}
	return context.Cause(le.ctx)
}

// Refresh extends the lease to ttl from now, or by its current TTL if ttl is
// zero. A new ttl also applies to later automatic renewals, with the renewal
// interval and drift scaled to it. An error wrapping [ErrNotHeld] means the
// lease is lost; other errors leave it as it was.
func (le *Lease) Refresh(ctx context.Context, ttl time.Duration) error {
	if ttl < 0 || (ttl > 0 && ttl < MinTTL) {
		return fmt.Errorf("%w: TTL %v is below the minimum %v", ErrInvalid, ttl, MinTTL)
	}
	if err := le.Err(); err != nil {
		return err
	}
	r := le.l.renew
	r.mu.Lock()
	if ttl == 0 {
		ttl = le.ttl
	}
	r.mu.Unlock()
	sent := time.Now()
	err := le.l.drv.Refresh(ctx, le.key, le.token, ttl)
	r.mu.Lock()
	defer r.unlock()
	if le.deadlineAt < 0 {
		if lerr := le.Err(); lerr != nil {
			return lerr
		}
		return errReleased
	}
	switch {
	case err == nil:
		if ttl != le.ttl {
			if le.renewEvery > 0 {
				le.renewEvery = time.Duration(float64(le.renewEvery) * float64(ttl) / float64(le.ttl))
			}
			le.drift = ttl/100 + 2*time.Millisecond
			le.ttl = ttl
		}
		r.confirmed(le, sent, ttl)
		return nil
	case errors.Is(err, ErrNotHeld):
		r.lose(le, err)
		return le.Err()
	default:
		le.failures++
		r.note(le, EventRefreshFailed, time.Since(sent), err)
		return fmt.Errorf("dlock: refresh %q: %w", le.key, err)
	}
}

// Release ends the lease and frees the key on the backend. It cancels the
// lease's context first, so dependent work stops before others can start.
// Releasing twice returns an error wrapping [ErrNotHeld]. If the lease was
// lost before, the error wraps [ErrLeaseLost]: exclusivity was not assured to
// the end.
func (le *Lease) Release(ctx context.Context) error {
	r := le.l.renew
	r.mu.Lock()
	if le.released {
		r.mu.Unlock()
		return fmt.Errorf("%w: lease on %q already released", ErrNotHeld, le.key)
	}
	le.released = true
	r.remove(le)
	r.mu.Unlock()
	lost := le.Err()
	le.cancel(errReleased)

	err := le.l.drv.Release(ctx, le.key, le.token)
	switch {
	case lost != nil:
		err = lost
	case err == nil:
	case errors.Is(err, ErrNotHeld):
		// The backend freed the key before the local deadline said so:
		// its clock ran fast, or someone deleted the key.
		err = fmt.Errorf("%w: %q was no longer held at release: %w", ErrLeaseLost, le.key, err)
		if le.obs.enabled() {
			le.obs.emit(le.ctx, le.event(EventLost, time.Since(le.acquired), err), 0)
		}
	default:
		err = fmt.Errorf("dlock: release %q: %w (it expires on its own)", le.key, err)
	}
	if le.obs.enabled() {
		le.obs.emit(le.ctx, le.event(EventReleased, time.Since(le.acquired), err), 0)
	}
	return err
}

// event describes le for an observer.
func (le *Lease) event(kind EventKind, d time.Duration, err error) Event {
	return Event{Kind: kind, Key: le.key, Owner: le.owner, Fence: le.fence, Duration: d, Err: err}
}
