package dlock

import (
	"errors"

	"github.com/dlock-go/dlock/driver"
)

// Errors returned by dlock. Test them with errors.Is: they are wrapped with
// detail (the key, the driver's cause, ctx.Err()).
var (
	// ErrNotAcquired reports that a key could not be acquired: it was held
	// and TryAcquire was used, the retry strategy gave up, or ctx ended while
	// waiting (then ctx.Err() is in the chain too).
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

	// ErrUnavailable reports that the backend could not be reached. It is
	// the same value as driver.ErrUnavailable.
	ErrUnavailable = driver.ErrUnavailable

	// ErrInvalid reports a bad argument, option or URL, detected before
	// any I/O. It is the same value as driver.ErrInvalid.
	ErrInvalid = driver.ErrInvalid
)

// ErrResigned is the cause of a leader's context after [Election.Resign].
var ErrResigned = errors.New("dlock: leadership resigned")
