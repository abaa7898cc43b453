package dlock

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// Holder describes a holder of a key; see [Locker.Holders].
type Holder struct {
	// Owner is the holder's [LeaseOptions].Owner.
	Owner string
	// Fence is the holder's fence (0 if it disabled fencing).
	Fence uint64
	// TTL is the time left before the holder's lease expires, unless
	// renewed.
	TTL time.Duration
	// Since is when the holder acquired the key, by the backend's clock;
	// zero if the backend does not know.
	Since time.Time
	// Limit is the limit the key is held under: 1 for a lock.
	Limit int
}

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
	l.cfg, l.err = opts.resolve()
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
// [ErrLimitMismatch], a missing capability, a refused password) are returned
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
func (l *Locker) Acquire(ctx context.Context, key string, opts *LeaseOptions) (*Lease, error) {
	return l.acquire(ctx, key, opts, true)
}

// TryAcquire makes one attempt to take key and returns an error wrapping
// [ErrNotAcquired] if it is held, and one wrapping [ErrUnavailable], never
// ErrNotAcquired, if the backend failed. Like Acquire, it undoes an attempt
// whose outcome is unknown before it returns.
func (l *Locker) TryAcquire(ctx context.Context, key string, opts *LeaseOptions) (*Lease, error) {
	return l.acquire(ctx, key, opts, false)
}

// Do acquires key (waiting as [Locker.Acquire] does), runs fn while holding
// it, and releases it. The context passed to fn is cancelled when ctx is or
// when the lease is lost, with context.Cause reporting [ErrLeaseLost]: fn
// must stop then, because someone else may hold the key soon. Like
// [Lease.Context], its Err and Done report the loss at the first look after
// the lease's local deadline, even before the renewal goroutine runs.
//
// The release always happens, on a context detached from ctx's
// cancellation and bounded by the Locker's ReleaseTimeout: also when fn
// panics, before the panic goes on. Do returns fn's error joined with the release's; if the lease was
// lost before the release (also by [Locker.Close]), that error wraps
// [ErrLeaseLost] even if fn succeeded, since exclusivity was not assured to
// the end.
func (l *Locker) Do(ctx context.Context, key string, opts *LeaseOptions, fn func(ctx context.Context, lease *Lease) error) error {
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

// Holders reports who holds key: none when it is free, the holder of a
// lock, or every holder of a semaphore's slots, lowest fence (granted
// first) first. It returns an error wrapping errors.ErrUnsupported if the
// driver cannot report holders.
func (l *Locker) Holders(ctx context.Context, key string) ([]Holder, error) {
	if err := l.check(key); err != nil {
		return nil, err
	}
	if l.inspect == nil {
		return nil, fmt.Errorf("dlock: driver %T cannot report holders: %w", l.drv, errors.ErrUnsupported)
	}
	hs, err := l.holders(ctx, key)
	if err != nil && ctx.Err() != nil {
		err = ended(ctx, fmt.Errorf("dlock: holders of %q", key), err)
	}
	return hs, err
}

// holders asks the driver for key's lock holder, and for its slots'
// holders when the key is a semaphore's.
func (l *Locker) holders(ctx context.Context, key string) ([]Holder, error) {
	h, ok, err := l.inspect.Inspect(ctx, key)
	slots, _ := l.drv.(driver.Semaphore)
	if errors.Is(err, driver.ErrWrongKind) && slots != nil {
		dhs, limit, err := slots.InspectSlots(ctx, key)
		if err != nil {
			return nil, err
		}
		hs := make([]Holder, len(dhs))
		for i, h := range dhs {
			hs[i] = Holder{Owner: h.Owner, Fence: h.Fence, TTL: h.TTL, Since: h.Since, Limit: limit}
		}
		slices.SortFunc(hs, func(a, b Holder) int { return cmp.Compare(a.Fence, b.Fence) })
		return hs, nil
	}
	if err != nil || !ok {
		return nil, mismatch(err)
	}
	return []Holder{{Owner: h.Owner, Fence: h.Fence, TTL: h.TTL, Since: h.Since, Limit: 1}}, nil
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

func (l *Locker) acquire(ctx context.Context, key string, opts *LeaseOptions, wait bool) (*Lease, error) {
	return l.acquireWith(ctx, key, opts, wait, nil)
}

// acquireWith is acquire with onBusy, which, if not nil, is called after
// each attempt that found the key held (an election looks up the new
// leader then).
func (l *Locker) acquireWith(ctx context.Context, key string, opts *LeaseOptions, wait bool, onBusy func(context.Context)) (*Lease, error) {
	if err := l.check(key); err != nil {
		return nil, err
	}
	cfg, err := opts.resolve(&l.cfg)
	if err != nil {
		return nil, err
	}
	ops, err := l.ops(cfg.limit)
	if err != nil {
		return nil, err
	}
	if !cfg.obs.enabled() {
		return l.attempts(ctx, key, cfg, ops, wait, onBusy)
	}
	start := time.Now()
	lease, err := l.attempts(ctx, key, cfg, ops, wait, onBusy)
	e := Event{Kind: EventNotAcquired, Key: key, Owner: cfg.owner, Limit: ops.limit(), Duration: time.Since(start), Err: err}
	if err == nil {
		e.Kind, e.Fence = EventGranted, lease.fence
	}
	cfg.obs.emit(ctx, e, 0)
	if lease != nil {
		l.renew.granted(lease)
	}
	return lease, err
}
