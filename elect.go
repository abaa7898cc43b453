package dlock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ElectionOptions configure an [Election]. A nil *ElectionOptions means the
// defaults.
type ElectionOptions struct {
	// Lease configures the leader's lease (TTL, renewal, owner), and with
	// its Limit how many candidates lead at once: up to Limit, holding
	// slots of a semaphore on the key, for N runners with hot standbys.
	// Every candidate of the key must use the same Limit (see
	// [ErrLimitMismatch]). Default: the Locker's options (a single leader
	// holding a lock).
	Lease *LeaseOptions

	// LossDelay is how long a candidate that lost its lease involuntarily
	// waits before campaigning again, like Consul's lock-delay: a leader
	// that just lost contact should not win straight back. Default: 0.
	LossDelay time.Duration

	// ResignDelay is how long a candidate waits after [Election.Resign]
	// before campaigning again, so that another one takes over.
	// Default: the lease TTL.
	ResignDelay time.Duration

	// OnElected is called when this candidate becomes leader, before the
	// lead function starts.
	OnElected func(lease *Lease)

	// OnDemoted is called when this candidate's leadership ended, after
	// the lead function returned and the lease was released. cause wraps
	// ErrLeaseLost after a loss, is ErrResigned after Resign, names the
	// panic if OnElected or the lead function panicked (OnDemoted runs
	// before the panic goes on), and is otherwise the lead function's
	// error (possibly nil).
	OnDemoted func(lease *Lease, cause error)

	// OnLeader is called while campaigning when a new leader is observed
	// (a holder with a fence not seen before). It needs a driver that can
	// report holders. The holder is looked up before the first attempt,
	// after every attempt that finds the key held (so a follower learns
	// of the winner one round trip after the election), and at least
	// once per lease TTL. With a Limit above 1, it is called for each new
	// holder.
	OnLeader func(h Holder)
}

// Election is a leader election on one key: every candidate runs
// [Election.Run], and at most one of them leads at a time.
//
// An Election is safe for concurrent use; run it once at a time.
type Election struct {
	l    *Locker
	key  string
	opts ElectionOptions

	mu     sync.Mutex
	resign context.CancelCauseFunc // cancels the current lead, if any
}

// NewElection returns an election on key.
func NewElection(l *Locker, key string, opts *ElectionOptions) *Election {
	e := &Election{l: l, key: key}
	if opts != nil {
		e.opts = *opts
	}
	return e
}

// Run campaigns for leadership until ctx ends. Each time it wins, it calls
// lead with a context that is cancelled when the lease is lost (its Err and
// Done report the loss at the first look after the lease's local deadline,
// like [Lease.Context]), when ctx ends, or on Resign, then waits for lead
// to return and releases the lease at once, so no renewal outlives the
// work. After a loss or a resignation it campaigns again. If lead returns
// while still leading, Run returns lead's error: the work is over. When ctx
// ends Run returns ctx's error. If lead panics or calls [runtime.Goexit],
// the lease is released and OnDemoted called before the panic or Goexit
// goes on.
func (e *Election) Run(ctx context.Context, lead func(ctx context.Context, lease *Lease) error) error {
	if lead == nil {
		return fmt.Errorf("%w: nil lead function", ErrInvalid)
	}
	if err := e.l.check(e.key); err != nil {
		return err
	}
	cfg, err := e.opts.Lease.resolve(&e.l.cfg)
	if err != nil {
		return err
	}
	if _, err := e.l.ops(cfg.limit); err != nil {
		return err
	}
	if e.opts.LossDelay < 0 || e.opts.ResignDelay < 0 {
		return fmt.Errorf("%w: negative election delay", ErrInvalid)
	}
	resignDelay := e.opts.ResignDelay
	if resignDelay == 0 {
		resignDelay = cfg.ttl
	}
	var seen uint64 // highest fence observed
	for {
		lease, err := e.campaign(ctx, cfg.ttl, &seen)
		if err != nil {
			return err
		}
		seen = max(seen, lease.Fence())
		lerr, lost, resigned := e.term(ctx, lease, cfg, lead)
		var pause time.Duration
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case lost != nil:
			pause = e.opts.LossDelay
		case resigned:
			pause = resignDelay
		default:
			return lerr
		}
		if err := sleep(ctx, pause); err != nil {
			return err
		}
	}
}

// term runs one leadership: OnElected, lead, the release and OnDemoted. It
// reports lead's error, the lease's loss if it was lost, and whether Resign
// ended it. If OnElected or lead panics (or calls runtime.Goexit), the
// lease is released and the demotion reported (with a cause that names the
// panic) before the panic goes on, so that a supervisor that recovers it
// leaves no lease behind; a Goexit stays a Goexit.
func (e *Election) term(ctx context.Context, lease *Lease, cfg settings, lead func(context.Context, *Lease) error) (lerr, lost error, resigned bool) {
	// Resign works from here on, also inside OnElected. lctx ends at the
	// lease's deadline at the first look, as the lease does (see Do).
	rctx, resign := context.WithCancelCause(ctx)
	lctx, cancel := lease.WithMargin(rctx, 0)
	e.mu.Lock()
	e.resign = resign
	e.mu.Unlock()

	returned := false
	defer func() {
		// Resign has no effect once lead returned: leadership is over.
		e.mu.Lock()
		e.resign = nil
		e.mu.Unlock()
		lost = lease.Err()
		resigned = errors.Is(context.Cause(rctx), ErrResigned)
		cancel()
		resign(nil)
		// A loss is already in lost; an unreachable backend lets it expire.
		finish(ctx, lease)

		cause := lerr
		var p any
		if !returned {
			// recover returns nil only for runtime.Goexit (since Go
			// 1.21, panic(nil) panics with a *runtime.PanicNilError),
			// which goes on by itself once this returns.
			if p = recover(); p != nil {
				cause = fmt.Errorf("dlock: lead function panicked: %v", p)
			} else {
				cause = errors.New("dlock: lead function ended its goroutine (runtime.Goexit)")
			}
		}
		switch {
		case lost != nil:
			cause = lost
		case resigned && returned:
			cause = ErrResigned
		}
		if cfg.obs.enabled() {
			cfg.obs.emit(ctx, lease.event(EventDemoted, time.Since(lease.acquired), cause), 0)
		}
		if e.opts.OnDemoted != nil {
			e.opts.OnDemoted(lease, cause)
		}
		if p != nil {
			panic(p)
		}
	}()
	if cfg.obs.enabled() {
		cfg.obs.emit(ctx, lease.event(EventElected, 0, nil), 0)
	}
	if e.opts.OnElected != nil {
		e.opts.OnElected(lease)
	}
	lerr = lead(lctx, lease)
	returned = true
	return lerr, nil, false
}

// Resign ends the current leadership, if this candidate leads: the lead
// function's context is cancelled with cause [ErrResigned], the lease is
// released when it returns, and Run waits ResignDelay before campaigning
// again. It works from the moment OnElected is called (the lead function
// then starts with its context cancelled) until the lead function returns;
// after that it has no effect, and Run returns the lead function's error as
// it would without it.
func (e *Election) Resign() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.resign != nil {
		e.resign(ErrResigned)
	}
}

// campaign waits until this candidate holds the key. When OnLeader is set
// it looks at the holder before its first attempt and after every attempt
// that finds the key held, so that a follower learns of a new leader one
// round trip after the election, and it waits at most one TTL at a time,
// so that leadership changes that no attempt saw are seen too.
func (e *Election) campaign(ctx context.Context, ttl time.Duration, seen *uint64) (*Lease, error) {
	for {
		actx, cancel := ctx, context.CancelFunc(func() {})
		var onBusy func(context.Context)
		if e.opts.OnLeader != nil {
			e.observe(ctx, seen)
			actx, cancel = context.WithTimeout(ctx, ttl)
			onBusy = func(ctx context.Context) { e.observe(ctx, seen) }
		}
		lease, err := e.l.acquireWith(actx, e.key, e.opts.Lease, true, onBusy)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return lease, err
		}
	}
}

// observe calls OnLeader for each holder with a fence above *seen: the
// lock's holder, or every holder of the semaphore's slots.
func (e *Election) observe(ctx context.Context, seen *uint64) {
	hs, err := e.l.Holders(ctx, e.key)
	if err != nil {
		return
	}
	top := *seen
	for _, h := range hs {
		if h.Fence > *seen {
			e.opts.OnLeader(h)
			top = max(top, h.Fence)
		}
	}
	*seen = top
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
