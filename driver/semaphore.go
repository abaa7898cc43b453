package driver

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrLimitMismatch reports an acquire of a semaphore slot with a limit
// other than the one the semaphore's current holders were granted under.
// The limit is stored with the semaphore while anyone holds a slot, and a
// client that disagrees is refused rather than let in, so that the key never
// has more holders than the smallest limit any of them was promised. Once
// every slot is free (released or expired), the next acquire sets the limit
// anew.
var ErrLimitMismatch = errors.New("dlock: semaphore limit mismatch")

// ErrWrongKind reports a lock call on a key whose semaphore slots are held,
// or a slot call on a key held as a lock: a key is one or the other (see
// [Semaphore]). A driver that stores the two as different types of one
// backend key may report it as its own wrong-type error instead, as long
// as it refuses the call.
var ErrWrongKind = errors.New("dlock: key is used as the other kind (a lock or a semaphore)")

// Semaphore is implemented by drivers that can hold a key for up to a limit
// of tokens at once: a counting semaphore, whose slots have the TTLs,
// fences and token checks of locks. A lock is the case of one slot, but the
// two are kept apart: a key is used either as a lock (the [Locker]
// methods) or as a semaphore (these), and a driver refuses the other kind
// of call on a key that is held (Redis answers with a key of the wrong
// type); it never lets a lock and a slot hold one key at once.
//
// Every method makes one round of backend calls, as the [Locker] methods
// do. A driver that wraps others and cannot offer semaphores (a quorum
// driver: a majority of per-node semaphores does not bound the holders)
// answers each method with an error wrapping errors.ErrUnsupported, at
// once (see the package documentation on wrapping drivers).
type Semaphore interface {
	// AcquireSlot makes one attempt to take one of limit slots of
	// req.Key for req.Token, for req.TTL. Holders whose TTL has passed
	// are dropped first, in the same atomic step. If fewer than limit
	// tokens hold the key, req.Token gets a slot and a fence strictly
	// greater than every fence granted before for the key, in any slot.
	// If limit tokens hold it, the result has Acquired false, err nil
	// and HolderTTL the time until the first slot expires (zero if
	// the backend does not know, as for [Result.HolderTTL]). If req.Token
	// holds a slot already, the attempt succeeds again with the same
	// fence and resets its TTL: a token holds one slot at most. A limit
	// other than the current holders' is refused with an error wrapping
	// [ErrLimitMismatch]; limit is at least 1.
	AcquireSlot(ctx context.Context, req Request, limit int) (Result, error)

	// RefreshSlot resets the TTL of token's slot of key to ttl, and
	// returns an error wrapping [ErrNotHeld] if token holds none (it
	// expired, was released, or never was granted).
	RefreshSlot(ctx context.Context, key, token string, ttl time.Duration) error

	// RefreshSlots refreshes every request as RefreshSlot would and
	// returns one error per request, in order, as
	// [BatchRefresher.RefreshBatch] does. A driver without a batch of
	// its own answers it with [RefreshSlotsOneByOne].
	RefreshSlots(ctx context.Context, reqs []RefreshRequest) []error

	// ReleaseSlot frees token's slot of key, and returns an error
	// wrapping [ErrNotHeld] if token holds none. A driver that
	// implements [Notifier] wakes the key's subscribers.
	ReleaseSlot(ctx context.Context, key, token string) error

	// InspectSlots reports every current holder of key's slots, earliest
	// expiry first, and the limit they hold them under (0 when none
	// does).
	InspectSlots(ctx context.Context, key string) (holders []Holder, limit int, err error)
}

// RefreshSlotsOneByOne refreshes reqs on s with one RefreshSlot per
// request, a few at a time, for drivers that cannot batch.
func RefreshSlotsOneByOne(ctx context.Context, s Semaphore, reqs []RefreshRequest) []error {
	return RefreshBatch(ctx, slotRefresher{s}, reqs)
}

// slotRefresher makes a Semaphore's RefreshSlot look like Locker.Refresh,
// for RefreshBatch's fallback; nothing else of it is called.
type slotRefresher struct{ s Semaphore }

func (r slotRefresher) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	return r.s.RefreshSlot(ctx, key, token, ttl)
}
func (slotRefresher) Acquire(context.Context, Request) (Result, error) {
	return Result{}, errors.ErrUnsupported
}
func (slotRefresher) Release(context.Context, string, string) error { return errors.ErrUnsupported }
func (slotRefresher) Close() error                                  { return nil }

// CheckLimit returns an error wrapping [ErrInvalid] if limit is not a valid
// semaphore limit: at least 1, and at most MaxLimit.
func CheckLimit(limit int) error {
	if limit < 1 || limit > MaxLimit {
		return fmt.Errorf("%w: semaphore limit %d is not in [1, %d]", ErrInvalid, limit, MaxLimit)
	}
	return nil
}

// MaxLimit is the largest semaphore limit. It bounds the work of one
// atomic acquire, which may drop up to limit expired holders.
const MaxLimit = 1 << 16
