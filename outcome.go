package dlock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dlock-go/dlock/driver"
)

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
	// limit is the semaphore's limit, 0 for a lock (Limit 1 is one):
	// for messages.
	limit int
}

// held says, for messages, that key is held by others.
func (st *acquireState) held(key string) string {
	if st.limit > 1 {
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
// cannot cure: misuse (ErrInvalid, ErrLimitMismatch), a
// missing capability (errors.ErrUnsupported), a refusal such as a wrong
// password, or Close.
func failed(key string, err error) error {
	return fmt.Errorf("dlock: acquire %q: %w", key, mismatch(err))
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
