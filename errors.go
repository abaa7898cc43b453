package dlock

import (
	"errors"
	"fmt"

	"github.com/dlock-go/dlock/driver"
)

// Errors returned by dlock. Test them with errors.Is: they are wrapped with
// detail (the key, the driver's cause, ctx.Err()). Each means one thing;
// the table under Errors in the package documentation says what to do
// about each.
var (
	// ErrNotAcquired reports that a key is held by someone else: TryAcquire
	// found it held, or a waiting Acquire gave up (ctx ended, then ctx.Err()
	// is in the chain too, or the retry strategy gave up) while the last
	// attempt found it held. It never reports a backend failure
	// ([ErrUnavailable]) or misuse ([ErrInvalid], [ErrLimitMismatch]).
	ErrNotAcquired = errors.New("dlock: lock not acquired")

	// ErrNotHeld reports that a key is not held by this lease any more: it
	// was released, expired, or taken over. It is the same value as
	// driver.ErrNotHeld.
	ErrNotHeld = driver.ErrNotHeld

	// ErrLeaseLost is the cause of a lease's context when the lease ended
	// without Release: the backend said it is no longer held, or renewal
	// could not be confirmed before the lease's local deadline. Work that
	// depends on exclusivity must stop when it sees it.
	ErrLeaseLost = errors.New("dlock: lease lost")

	// ErrClosed reports use of a Locker after Close. It is the same value
	// as driver.ErrClosed.
	ErrClosed = driver.ErrClosed

	// ErrUnavailable reports that the backend failed: it could not be
	// reached, refused service for now, or did not answer in time. An
	// acquire that fails so, or a waiting one whose ctx ends while the
	// backend fails, wraps it (and not [ErrNotAcquired]). It is the same
	// value as driver.ErrUnavailable.
	ErrUnavailable = driver.ErrUnavailable

	// ErrInvalid reports a bad argument, option or URL, detected before
	// any I/O. It is the same value as driver.ErrInvalid.
	ErrInvalid = driver.ErrInvalid

	// ErrLimitMismatch reports an acquire of a key in use with another
	// [LeaseOptions].Limit (a lock is limit 1). It is not retried: clients
	// that disagree on a limit are a configuration error, and letting them
	// in would allow more holders than some of them were promised. Once
	// every holder is gone, the next acquire sets the limit anew. The
	// driver's errors for it (driver.ErrLimitMismatch, driver.ErrWrongKind)
	// are in the chain too.
	ErrLimitMismatch = driver.ErrLimitMismatch
)

// mismatch returns err, which wraps [ErrLimitMismatch] too if the driver
// reported a key of the other kind (a lock's, a semaphore's).
func mismatch(err error) error {
	if errors.Is(err, driver.ErrWrongKind) && !errors.Is(err, ErrLimitMismatch) {
		return fmt.Errorf("%w: %w", ErrLimitMismatch, err)
	}
	return err
}

// ErrResigned is the cause of a leader's context after [Election.Resign].
var ErrResigned = errors.New("dlock: leadership resigned")
