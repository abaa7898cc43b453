package dlock

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/leasetime"
)

// errReleased is a released lease's context cause.
var errReleased = fmt.Errorf("%w: released", ErrNotHeld)

// A Lease is a held key. It stays valid until [Lease.Release], or until it is
// lost: the backend reports that someone else holds the key, or renewal
// cannot be confirmed before the local deadline. Loss ends [Lease.Context]
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
	ops            keyOps    // a lock's or a semaphore slot's calls

	ctx    context.Context // ended by cancel, when the lease ends
	cancel context.CancelCauseFunc
	outer  leaseContext // ctx, and loss at the first look: see Context

	// deadlineNs is the local deadline as an offset from the renewer's
	// epoch (monotonic), less the time the machine slept since it was
	// set, for readers that take no lock.
	deadlineNs sleepAwareDeadline

	// Guarded by l.renew.mu.
	ttl, renewEvery, drift time.Duration
	renewSet, driftSet     bool      // renewEvery, drift were set explicitly
	deadline               time.Time // local deadline, monotonic
	nextRenew              time.Time
	refreshing             bool                        // a renewal round or a Refresh has it
	refreshDone            chan struct{}               // closed when refreshing ends, if someone waits
	margins                map[*marginContext]struct{} // see WithMargin
	released               bool
	failures               int           // consecutive failed renewals
	ttlCap                 time.Duration // if not 0, the longest TTL a refresh may ask for; see Refresh
	grantPending           bool          // EventGranted not reported yet; see renewer.note
	held                   []heldEvent   // events noted meanwhile
	deadlineAt, renewAt    int           // positions in the renewer's heaps, or -1
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
// a holder that was paused past its lease from doing harm. It is 0 for a
// lock taken with fencing disabled ([LeaseOptions].DisableFencing).
func (le *Lease) Fence() uint64 { return le.fence }

// Owner returns the owner name recorded with the lease.
func (le *Lease) Owner() string { return le.owner }

// sleepAwareDeadline holds a deadline on the monotonic clock, which stands
// still while the machine is suspended although the backend's expiry runs
// on: Load takes the time slept since Store (see [leasetime.Slept]) off
// it, so the first look after a resume sees the loss.
type sleepAwareDeadline struct{ p atomic.Pointer[deadlineMark] }

type deadlineMark struct {
	ns    int64         // offset from the renewer's epoch
	slept time.Duration // leasetime.Slept() when it was set
}

func (d *sleepAwareDeadline) Store(ns int64) {
	d.p.Store(&deadlineMark{ns, leasetime.Slept()})
}

func (d *sleepAwareDeadline) Load() int64 {
	m := d.p.Load()
	if m == nil {
		return 0
	}
	if slept := leasetime.Slept() - m.slept; slept >= leasetime.MinSleep {
		return m.ns - int64(slept)
	}
	return m.ns
}

// ValidUntil returns the current local deadline, on the monotonic clock:
// the lease is lost at that moment unless a renewal confirms it first. Each
// confirmed renewal moves it later; time the machine spends suspended
// (which the monotonic clock does not count on Linux, while the backend's
// expiry does) moves it earlier by as much. It takes no lock and is safe
// to call often.
func (le *Lease) ValidUntil() time.Time {
	return le.l.renew.epoch.Add(time.Duration(le.deadlineNs.Load()))
}

// expired reports whether the local deadline has passed.
func (le *Lease) expired() bool {
	return time.Since(le.l.renew.epoch) >= time.Duration(le.deadlineNs.Load())
}

// Context returns a context that is cancelled when the lease ends. Its
// cause ([context.Cause]) is the lease's [Lease.Err]. It carries the values
// of the context passed to Acquire but not its cancellation.
//
// Its Err and Done see a loss at the first look, like [Lease.Err]: once the
// local deadline has passed they report it, even if the renewal goroutine
// has not run yet (after a pause of the process, say). Contexts derived
// from it see the loss when the renewal goroutine declares it, a moment
// later.
func (le *Lease) Context() context.Context { return &le.outer }

// Err returns nil while the lease is held; after it ends, an error wrapping
// [ErrLeaseLost] if it was lost, or [ErrNotHeld] if it was released. It
// reports the loss as soon as the local deadline has passed, on the
// monotonic clock or counting a suspend of the machine (see ValidUntil),
// even if the renewal goroutine has not noticed yet: a holder resuming
// from a pause or a suspend learns it at its first look.
func (le *Lease) Err() error {
	if le.ctx.Err() == nil {
		if !le.expired() {
			return nil
		}
		le.l.renew.expire(le)
		if le.ctx.Err() == nil {
			return nil // renewed meanwhile
		}
	}
	return context.Cause(le.ctx)
}

// endedLocked is the error of a lease no longer scheduled, for a caller
// holding l.renew.mu: its loss, or errReleased while a Release that
// unscheduled it has yet to cancel its context. It must not call Err,
// which may take the renewer's lock to declare a loss.
func (le *Lease) endedLocked() error {
	if err := context.Cause(le.ctx); err != nil {
		return err
	}
	return errReleased
}

// WithMargin returns a context derived from parent that is also cancelled
// when the lease ends, and margin before the lease's local deadline unless
// a renewal has moved the deadline further by then: work that needs time
// to stop safely (flush, roll back, kill a process) starts stopping while
// the lease is still valid, rather than at the loss. Every confirmed
// renewal moves the cut-off with the deadline, earlier too (a shorter
// TTL from [Lease.Refresh]); with margin 0 it is the lease's own
// context, derived from parent.
//
// When the margin is reached, the cause ([context.Cause]) wraps
// [ErrLeaseLost], so that work checking for loss stops, although the lease
// itself may still be renewed in time ([Lease.Err] is nil until the
// deadline). When the lease ends first, the cause is [Lease.Err]. A margin
// not below the time left cancels at once. Like [Lease.Context], its Err
// and Done report the cut-off at the first look after it, even if its
// timer has not run yet.
//
// Call the returned cancel function when the work is done, to release the
// timer. While waiting it costs one timer, no goroutine; the timer is reset
// when a renewal moves the deadline. A negative margin counts as 0.
func (le *Lease) WithMargin(parent context.Context, margin time.Duration) (context.Context, context.CancelFunc) {
	margin = max(margin, 0)
	inner, cancel := context.WithCancelCause(parent)
	c := &marginContext{Context: inner, le: le, margin: margin, cancel: cancel}
	stopLease := context.AfterFunc(le.ctx, func() { cancel(context.Cause(le.ctx)) })
	if margin == 0 {
		// The renewal loop ends the lease at its deadline, and check
		// sees it at the first look before that: no timer of its own
		// (Do and Election hand out such a context for every lease).
		context.AfterFunc(inner, func() { stopLease() })
		c.check()
		return c, func() { cancel(context.Canceled) }
	}
	r := le.l.renew
	r.mu.Lock()
	c.timer = time.AfterFunc(c.until(), c.fire)
	if le.margins == nil {
		le.margins = make(map[*marginContext]struct{})
	}
	le.margins[c] = struct{}{}
	r.mu.Unlock()
	context.AfterFunc(inner, func() {
		stopLease()
		r.mu.Lock()
		c.timer.Stop()
		delete(le.margins, c)
		r.mu.Unlock()
	})
	c.check()
	return c, func() { cancel(context.Canceled) }
}

// marginContext is a context of [Lease.WithMargin].
type marginContext struct {
	context.Context // cancelled by cancel
	le              *Lease
	margin          time.Duration
	cancel          context.CancelCauseFunc
	timer           *time.Timer // fires at the cut-off; guarded by le.l.renew.mu
}

func (c *marginContext) Done() <-chan struct{} {
	c.check()
	return c.Context.Done()
}

func (c *marginContext) Err() error {
	c.check()
	return c.Context.Err()
}

// until returns the time left before the cut-off.
func (c *marginContext) until() time.Duration {
	return time.Until(c.le.ValidUntil()) - c.margin
}

// check cancels c if the cut-off has passed.
func (c *marginContext) check() {
	if c.until() > 0 || c.Context.Err() != nil {
		return
	}
	if err := c.le.Err(); err != nil {
		c.cancel(err)
		return
	}
	if c.until() > 0 {
		return // a renewal moved the cut-off meanwhile
	}
	c.cancel(fmt.Errorf("%w: %q: renewal not confirmed %v before the local deadline", ErrLeaseLost, c.le.key, c.margin))
}

// fire runs at the cut-off planned when the timer was set; a renewal may
// have moved it since, and the timer is set again.
func (c *marginContext) fire() {
	c.check()
	if c.Context.Err() != nil {
		return
	}
	r := c.le.l.renew
	r.mu.Lock()
	if _, ok := c.le.margins[c]; ok {
		c.timer.Reset(c.until())
	}
	r.mu.Unlock()
}

// leaseContext is a lease's context as users see it: the cancel context,
// whose Err and Done first check the local deadline. Derived contexts
// attach to the inner one (it is found through Value), at no extra cost.
type leaseContext struct {
	context.Context
	le *Lease
}

func (c *leaseContext) Done() <-chan struct{} {
	c.check()
	return c.Context.Done()
}

func (c *leaseContext) Err() error {
	c.check()
	return c.Context.Err()
}

// check ends the lease if its local deadline has passed: the clock first,
// which is all a look at a valid lease costs.
func (c *leaseContext) check() {
	if c.le.expired() && c.Context.Err() == nil {
		c.le.l.renew.expire(c.le)
	}
}

// Refresh extends the lease to ttl from now, or by its current TTL if ttl is
// zero. A new ttl also applies to later automatic renewals: a renewal
// interval and drift derived from the TTL follow it, an explicit Drift stays
// as set and an explicit RenewInterval keeps its ratio to the TTL; settings
// that would guarantee loss are refused with [ErrInvalid] before any I/O.
//
// A lease's refreshes, automatic or not, never overlap: Refresh waits for a
// renewal in flight, so the local deadline always follows the TTL the
// backend applied last. A refresh whose outcome is unknown (an error other
// than [ErrNotHeld]) may have been applied: if its TTL is shorter, the local
// deadline moves earlier to match. If the outcome is unknown as
// [driver.OutcomeUnknown] tells (a timeout, say), the request may even
// reach the backend later, after other refreshes, and set the key's expiry
// back to its TTL then: from then on the lease never asks for a longer TTL
// than that one (a longer ttl is cut down to it), and renews with it if it
// is shorter. The same holds after an automatic renewal of unknown outcome,
// and for a lease whose Acquire made an attempt of unknown outcome with its
// token. An error wrapping
// [ErrNotHeld] means the lease is lost; other errors leave it held.
func (le *Lease) Refresh(ctx context.Context, ttl time.Duration) error {
	if ttl < 0 {
		return fmt.Errorf("%w: TTL %v is negative", ErrInvalid, ttl)
	}
	if err := le.Err(); err != nil {
		return err
	}
	le.l.track() // Close waits for it; see Close
	defer le.l.leave()
	r := le.l.renew
	t, err := le.startRefresh(ctx, ttl)
	if err != nil {
		return err
	}
	// No refresh outlives the deadline it could save: past it, the lease
	// is lost whatever the backend says.
	r.mu.Lock()
	rctx, cancel := context.WithDeadline(ctx, le.deadline)
	r.mu.Unlock()
	sent := time.Now()
	err = le.refreshCall(rctx, t.TTL)
	cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.endRefresh(le)
	if le.deadlineAt < 0 {
		return le.endedLocked()
	}
	switch {
	case err == nil:
		le.setTiming(t)
		r.confirmed(le, sent, t.TTL)
		return nil
	case errors.Is(err, ErrNotHeld):
		r.lose(le, err)
		return le.Err()
	default:
		r.failed(le, sent, t, err)
		return fmt.Errorf("dlock: refresh %q: %w", le.key, err)
	}
}

// startRefresh waits until no refresh of le is in flight, then takes le
// for a refresh with ttl (0: the current TTL) and returns the settings it
// will have if the refresh succeeds.
func (le *Lease) startRefresh(ctx context.Context, ttl time.Duration) (leasetime.Settings, error) {
	r := le.l.renew
	r.mu.Lock()
	for le.refreshing && le.deadlineAt >= 0 {
		if le.refreshDone == nil {
			le.refreshDone = make(chan struct{})
		}
		done := le.refreshDone
		r.mu.Unlock()
		select {
		case <-done:
		case <-le.ctx.Done():
		case <-ctx.Done():
			return leasetime.Settings{}, fmt.Errorf("dlock: refresh %q: %w", le.key, ctx.Err())
		}
		r.mu.Lock()
	}
	defer r.mu.Unlock()
	if le.deadlineAt < 0 {
		return leasetime.Settings{}, le.endedLocked()
	}
	t := le.timing()
	if le.ttlCap > 0 {
		ttl = min(ttl, le.ttlCap) // see Refresh
	}
	if ttl != 0 && ttl != t.TTL {
		t = t.WithTTL(ttl)
		if err := t.Check(); err != nil {
			return t, fmt.Errorf("%w: refresh %q: %w", ErrInvalid, le.key, err)
		}
	}
	le.refreshing = true
	if le.renewAt >= 0 {
		heap.Remove(&r.renewals, le.renewAt)
	}
	return t, nil
}

// timing returns le's TTL-dependent settings. l.renew.mu must be held.
func (le *Lease) timing() leasetime.Settings {
	return leasetime.Settings{TTL: le.ttl, Renew: le.renewEvery, Drift: le.drift, RenewSet: le.renewSet, DriftSet: le.driftSet}
}

// setTiming sets le's TTL-dependent settings. l.renew.mu must be held.
func (le *Lease) setTiming(t leasetime.Settings) {
	le.ttl, le.renewEvery, le.drift, le.renewSet, le.driftSet = t.TTL, t.Renew, t.Drift, t.RenewSet, t.DriftSet
}

// Release ends the lease and frees the key on the backend. It cancels the
// lease's context first, so dependent work stops before others can start.
// If ctx has ended, before the call or during it, the key is freed all the
// same, on a context detached from ctx's cancellation and bounded by the
// ReleaseTimeout: a caller that gave up never keeps the key from others.
// Releasing twice returns an error wrapping [ErrNotHeld]. If the lease was
// lost before, the error wraps [ErrLeaseLost]: exclusivity was not assured to
// the end; the key is then still released (a renewal that succeeded after
// the deadline may hold it), but for at most a quarter of the TTL, since the
// backend that caused the loss may not answer.
func (le *Lease) Release(ctx context.Context) error {
	// Counted before it leaves the renewer, so that a Close either
	// releases le itself or waits for this call.
	le.l.track()
	defer le.l.leave()
	r := le.l.renew
	r.mu.Lock()
	if le.released {
		r.mu.Unlock()
		return fmt.Errorf("%w: lease on %q already released", ErrNotHeld, le.key)
	}
	le.released = true
	if le.deadlineAt >= 0 && !le.deadline.After(time.Now()) {
		// The deadline passed before the release, whether or not the
		// loop noticed (after a pause, say): the lease was lost.
		r.lose(le, errDeadline)
	}
	r.remove(le)
	r.mu.Unlock()
	lost := le.Err()
	le.cancel(errReleased)

	bound := le.releaseTimeout
	if lost != nil {
		// The key may still be held, by a renewal that succeeded
		// after the deadline, so it is released all the same; but
		// the backend most likely caused the loss, and the caller
		// must learn of it without waiting out a long timeout.
		bound = min(bound, le.ttl/4)
	}
	start := time.Now()
	callCtx, cancelCall := ctx, context.CancelFunc(func() {})
	if dl, ok := ctx.Deadline(); !ok || dl.Sub(start) > bound {
		// Not when ctx ends within the bound already (as in Do), where
		// a timer of its own would cost allocations and change nothing.
		callCtx, cancelCall = context.WithTimeout(ctx, bound)
	}
	err := le.releaseCall(callCtx)
	cancelCall()
	if dl, ok := ctx.Deadline(); ctx.Err() != nil && driver.OutcomeUnknown(err) && (!ok || dl.Sub(start) < bound) {
		// The caller gave up (before the call or during it) sooner
		// than the bound: free the key all the same (token-checked,
		// so harmless if the first call did), rather than leave it
		// held for a TTL. A caller that allowed the whole bound
		// already had the one attempt it gets.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bound)
		err = le.releaseCall(dctx)
		cancel()
		if errors.Is(err, ErrNotHeld) {
			err = nil // the first call freed it
		}
	}
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

// refreshCall refreshes le on the backend, as a lock or a slot.
func (le *Lease) refreshCall(ctx context.Context, ttl time.Duration) error {
	return le.ops.refresh(ctx, le.key, le.token, ttl)
}

// releaseCall frees le on the backend, as a lock or a slot.
func (le *Lease) releaseCall(ctx context.Context) error {
	return le.ops.release(ctx, le.key, le.token)
}
