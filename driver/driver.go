package driver

import (
	"context"
	"errors"
	"time"
)

// Driver errors. Drivers wrap them with %w and add context; callers test them
// with errors.Is.
var (
	// ErrNotHeld reports that the key is not held by the given token: it
	// expired, was released, or is held by someone else. Refresh, Release
	// and FenceRaiser.RaiseFence return it; the lease it concerns is gone.
	ErrNotHeld = errors.New("dlock: lock not held")

	// ErrUnavailable reports that the backend could not be reached or
	// refused service for now (connection refused, failover in progress,
	// server loading), and that the operation was surely not applied. An
	// operation whose outcome is unknown must not be reported as
	// ErrUnavailable: see [ErrOutcomeUnknown].
	ErrUnavailable = errors.New("dlock: backend unavailable")

	// ErrOutcomeUnknown reports an operation that may or may not have
	// been applied: it was sent, and then the reply was lost (a timeout,
	// the connection dropped, the context ended in flight). A driver
	// reports such an outcome with an error that wraps ErrOutcomeUnknown,
	// or, as net and go-redis errors do, with a Timeout() bool method that
	// reports true; [OutcomeUnknown] recognises both. Package dlock
	// undoes an Acquire whose outcome is unknown at once (a token-checked
	// Release of the request's token, harmless if it was never granted),
	// so that a grant nobody received does not keep the key from others
	// for a whole TTL. A driver that undoes a failed attempt itself before
	// returning (a quorum driver that released every node that may have
	// granted, after awaiting their answers) reports the failure as a
	// known one, neither wrapping ErrOutcomeUnknown nor reporting
	// Timeout(), so that it is not undone twice.
	ErrOutcomeUnknown = errors.New("dlock: outcome unknown")

	// ErrClosed reports use of a driver (or a dlock.Locker) after Close.
	// It is the same value as dlock.ErrClosed.
	ErrClosed = errors.New("dlock: locker closed")
)

// OutcomeUnknown reports whether err says that an operation may have been
// applied although it did not report success: err wraps
// [ErrOutcomeUnknown], [context.Canceled] or [context.DeadlineExceeded]
// (the call may have been sent before its context ended), or has a
// Timeout() bool method that reports true. An error wrapping
// [ErrUnavailable] is never unknown: the operation surely was not applied.
// An error that aggregates the errors of several calls (a quorum's) decides
// for itself with an OutcomeUnknown() bool method, found with errors.As
// before any of the rules above: the quorum driver may have undone the
// calls whose outcome was unknown, and its causes would otherwise say
// "unknown". A driver that wraps others (a quorum driver) uses
// OutcomeUnknown to tell which inner calls need undoing.
func OutcomeUnknown(err error) bool {
	if err == nil {
		return false
	}
	var d interface{ OutcomeUnknown() bool }
	if errors.As(err, &d) {
		return d.OutcomeUnknown()
	}
	if errors.Is(err, ErrUnavailable) {
		return false
	}
	if errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// Request is one attempt to acquire a key.
type Request struct {
	// Key names the lock. It is never empty.
	Key string
	// Token is the caller's secret proof of ownership: 128 random bits,
	// encoded as text. Refresh and Release succeed only with it.
	Token string
	// TTL is how long the backend keeps the lock without a refresh. It is
	// at least one millisecond.
	TTL time.Duration
	// Owner is a human-readable description of the holder (host:pid by
	// default), reported by [Inspector]. It is not a secret.
	Owner string
	// NoFence tells the driver that the caller ignores fences (a quorum
	// driver with fencing switched off). The driver may skip the work of
	// keeping them and return Fence 0.
	NoFence bool
}

// Result is the outcome of an acquire attempt that reached the backend.
type Result struct {
	// Acquired reports whether the key is now held by the request's token.
	Acquired bool
	// Fence is set when Acquired: a number strictly greater than every
	// fence the backend granted for this key before. A repeated request
	// with the same token while the key is held returns the same fence.
	Fence uint64
	// HolderTTL, when not Acquired, is the remaining time before the
	// current holder's lock expires, in (0, the holder's TTL]: dlock waits
	// exactly until then. Zero means the backend does not know (a driver
	// may always leave it zero, or leave it zero when finding it out
	// failed); dlock then waits its retry backoff, and conformance.Run
	// skips the case that checks the value.
	HolderTTL time.Duration
}

// Locker is the interface a backend implements. Implementations must be safe
// for concurrent use.
type Locker interface {
	// Acquire makes one attempt to take req.Key for req.Token. If the key
	// is free it is taken for req.TTL. If it is held by another token the
	// result has Acquired false and err nil. If it is already held by
	// req.Token the attempt succeeds again, resets the TTL and returns the
	// same fence, so a retry after a lost reply is safe.
	Acquire(ctx context.Context, req Request) (Result, error)

	// Refresh resets the TTL of key to ttl if it is held by token, and
	// returns an error wrapping ErrNotHeld otherwise.
	Refresh(ctx context.Context, key, token string, ttl time.Duration) error

	// Release frees key if it is held by token, and returns an error
	// wrapping ErrNotHeld otherwise. A driver that implements [Notifier]
	// wakes the key's subscribers.
	Release(ctx context.Context, key, token string) error

	// Close releases the driver's resources (connections, subscriptions).
	// It does not release held keys: they expire on their own.
	Close() error
}

// Notifier is implemented by drivers that can wake waiters when a key is
// released, so they need not poll.
type Notifier interface {
	// Subscribe starts watching releases of key. It returns once the
	// subscription is active, so a release that happens after Subscribe
	// returns is never missed. The channel receives a value after each
	// release of key; it is buffered and never closed, and a slow reader
	// may see several releases as one. A subscription is woken at every
	// release, except one that a driver that queues waiters ([Handoff])
	// serves by waking or granting the first queued waiter alone: a
	// plain subscriber then wakes at its backoff or the holder's expiry,
	// as without a Notifier. cancel ends the subscription and must be
	// called exactly once.
	Subscribe(ctx context.Context, key string) (released <-chan struct{}, cancel func(), err error)
}

// Holder describes the current holder of a key.
type Holder struct {
	// Owner is the Request.Owner of the holder.
	Owner string
	// Fence is the holder's fence.
	Fence uint64
	// TTL is the time left before the holder's lock expires.
	TTL time.Duration
	// Since is when the holder acquired the key, by the backend's clock;
	// zero if the backend does not know.
	Since time.Time
}

// Inspector is implemented by drivers that can report who holds a key.
type Inspector interface {
	// Inspect reports the holder of key; ok is false when the key is free.
	// A driver that offers semaphores refuses a key whose slots are held
	// (see [ErrWrongKind]) rather than report it free.
	Inspect(ctx context.Context, key string) (h Holder, ok bool, err error)
}

// RefreshRequest is one item of a batched refresh.
type RefreshRequest struct {
	Key   string
	Token string
	TTL   time.Duration
}

// BatchRefresher is implemented by drivers that can refresh many keys in one
// round trip.
type BatchRefresher interface {
	// RefreshBatch refreshes every request as Locker.Refresh would and
	// returns one error per request, in order (nil for success). If the
	// whole round failed, every element carries that failure.
	RefreshBatch(ctx context.Context, reqs []RefreshRequest) []error
}

// FenceRaiser is implemented by drivers whose fences can be raised from
// outside. A quorum driver (redlock) uses it to write the fence it hands out
// back to a majority of nodes, so that every later majority grants a higher
// one.
type FenceRaiser interface {
	// RaiseFence makes sure every fence later granted for key is greater
	// than fence, and records fence as the current holder's fence. It
	// returns an error wrapping ErrNotHeld if key is not held by token.
	RaiseFence(ctx context.Context, key, token string, fence uint64) error
}
