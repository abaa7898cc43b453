package redlock

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// round calls fn for the nodes in idx in parallel, each with a context
// bounded by timeout, and returns when every call has returned. Nodes that
// ignore their context delay it.
func (l *locker) round(ctx context.Context, idx []int, timeout time.Duration, fn func(ctx context.Context, i int)) {
	l.ask(ctx, idx, timeout, func(ctx context.Context, i int) (driver.Result, error) {
		fn(ctx, i)
		return driver.Result{}, nil
	}, func(int, driver.Result, error) bool { return false }, nil)
}

// answer is one node's reply in a round.
type answer struct {
	i    int
	res  driver.Result
	err  error
	errs []error // a batch's, one per request
}

// ask calls call for the nodes in idx in parallel, each with a context
// bounded by timeout, and hands each answer to take, in the caller's
// goroutine, as it arrives. It returns once every node answered, or as
// soon as take returns true: the calls still running then finish on the
// workers (which Close waits for), and their answers are dropped unless
// the caller calls rest, which waits for them (for at most within, if not
// zero) and hands them to take too. done, if not nil, runs once every call
// has returned. Close ends the calls still running. Nodes that ignore
// their context delay it.
func (l *locker) ask(ctx context.Context, idx []int, timeout time.Duration,
	call func(ctx context.Context, i int) (driver.Result, error), take func(i int, res driver.Result, err error) bool,
	done func()) (rest func(within time.Duration)) {
	if len(idx) == 0 {
		return func(time.Duration) {}
	}
	// The calls start together, so one deadline serves them all; the last
	// to return ends it.
	ctx, cancel := l.bound(ctx, timeout)
	var left atomic.Int32
	left.Store(int32(len(idx)))
	returned := func() {
		if left.Add(-1) == 0 {
			cancel()
			if done != nil {
				done()
			}
		}
	}
	answers := make(chan answer, len(idx)) // never blocks a late call
	for _, i := range idx {
		l.workers.do(func() {
			defer returned()
			res, err := call(ctx, i)
			answers <- answer{i: i, res: res, err: err}
		})
	}
	received := 0
	for received < len(idx) {
		a := <-answers
		received++
		if take(a.i, a.res, a.err) {
			break
		}
	}
	return func(within time.Duration) {
		var expired <-chan time.Time
		if within > 0 {
			t := time.NewTimer(within)
			defer t.Stop()
			expired = t.C
		}
		for ; received < len(idx); received++ {
			select {
			case a := <-answers:
				take(a.i, a.res, a.err)
			case <-expired:
				return
			}
		}
	}
}

// bound returns ctx limited to timeout, and ended by Close too.
func (l *locker) bound(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	unhook := context.AfterFunc(l.stop, cancel)
	return ctx, func() {
		unhook()
		cancel()
	}
}

// detach returns a context with ctx's values that ends after timeout or
// at Close, not when ctx ends: the context of node calls that must not be
// cut by their caller (see Acquire). It is bound(context.WithoutCancel(ctx),
// timeout) at the cost of one context: its parent is a [closeCtx].
func (l *locker) detach(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(closeCtx{values: ctx, stop: l.stop}, timeout)
}

// closeCtx has the values of one context and the cancellation of
// another, stop, which has no values and no deadline (the driver's
// Close). The context package finds stop's cancelCtx through Value, as it
// finds any parent's, so a context derived from a closeCtx is a child of
// stop itself: no goroutine nor AfterFunc links them.
type closeCtx struct {
	values, stop context.Context
}

func (c closeCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c closeCtx) Done() <-chan struct{}       { return c.stop.Done() }
func (c closeCtx) Err() error                  { return c.stop.Err() }

func (c closeCtx) Value(key any) any {
	if v := c.stop.Value(key); v != nil {
		return v // the context package's own key, for stop's cancelCtx
	}
	return c.values.Value(key)
}

// minGrace is the least that a call decided before every node answered
// waits for the others (it waits as long again as the decision took): a
// subscription, so that a healthy node's notifications are heard too, and
// a Release of a token that a majority did not hold, so that its error
// gives each node's cause. A node
// whose answer is late by a busy machine is then still awaited, while a
// node that does not answer delays the call little.
const minGrace = 10 * time.Millisecond

// window returns the validity window of a call with ttl (the time within
// which a majority must confirm) and its per-node timeout.
func (l *locker) window(ttl time.Duration) (window, timeout time.Duration, err error) {
	drift := l.cfg.driftFor(ttl)
	window = ttl - drift
	if window <= 0 {
		return 0, 0, fmt.Errorf("%w: redlock: drift %v leaves nothing of TTL %v", driver.ErrInvalid, drift, ttl)
	}
	return window, min(l.cfg.timeoutFor(ttl), window), nil
}

// checkToken refuses an empty token before any I/O: with it anyone could
// refresh or release a lock taken with "".
func checkToken(token string) error {
	if token == "" {
		return fmt.Errorf("%w: redlock: empty token", driver.ErrInvalid)
	}
	return nil
}
