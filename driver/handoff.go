package driver

import (
	"context"
	"time"
)

// Handoff is implemented by Notifiers that queue waiters and hand a
// released key straight to the first one still waiting, within the release
// itself: the waiter then holds the key without the round trip of another
// attempt.
//
// A waiter that accepts grants subscribes with SubscribeHandoff under its
// token and makes its attempts with AcquireQueued, numbered ([Queued]). A
// busy queued attempt is queued with its Token, TTL, Owner and Attempt
// (a later one replaces it). A release, or a waiter passing its turn on,
// takes the first queued waiter whose Wait has not run out and whose
// subscription is still active (asked of the backend before the grant:
// a notification that may reach others, such as a pattern subscriber or
// a replica, is no proof),
// grants it the key for the queued attempt's TTL with a fresh fence, as
// an Acquire of that attempt would, and sends it a [Turn] with Granted,
// the fence and the attempt's number. A waiter whose subscription is gone
// is skipped: its turn passes to the next. A Turn with Granted set is
// sent only for a grant that stands: the backend never takes it back. No
// driver runs I/O of its own in the background to release a grant: every
// grant reaches the waiter's channel, and its caller releases what it does
// not keep.
//
// Safety of a handed-off lease (the one statement of it, which package
// dlock, the drivers and the README refer to): the waiter counts its lease
// from the moment it sent the attempt named in the Turn, as if that
// attempt's reply had granted it, and ends it TTL − drift later, as any
// lease. The backend received that attempt after it was sent, and counts
// the grant's TTL from the release, which it handles later still, so the
// backend's expiry is never before the waiter's local deadline: a
// handed-off lease is as safe as one from an attempt's own reply. The
// worst case is that of any holder: a waiter frozen when the grant is made
// keeps the key for one TTL, as a frozen holder does, and fences stop it
// if it wakes up late.
type Handoff interface {
	Notifier
	// AcquireQueued is Locker.Acquire for an attempt of a waiter
	// subscribed with SubscribeHandoff under req.Token: if the key is
	// busy, the attempt is queued, and a release may grant the key on
	// it (see [Queued]). Acquire itself never queues.
	AcquireQueued(ctx context.Context, req Request, q Queued) (Result, error)
	// SubscribeHandoff is Notifier.Subscribe for a waiter with token
	// (never empty) that accepts grants. The channel is buffered and
	// never closed; it receives a Turn after each release that woke this
	// waiter, and a Turn with Granted set is never dropped or merged with
	// another, except that a later grant to the token takes the place of
	// an earlier one still unread: the backend granted the key again only
	// once it was free, so the earlier grant has ended.
	//
	// Give-up is synchronous: cancel returns once the backend grants the
	// token nothing more (it may wait for the backend to confirm), and
	// every grant made to the token before is then in the channel,
	// where the caller finds it and releases it, unless an Acquire with
	// the token returned the key (an attempt that finds the key granted
	// to its token returns that grant as its own, and the caller keeps
	// it as its lease while the grant's notification may still be on its
	// way). A driver that cannot tell whether a grant was made (its
	// connection to the backend broke while the waiter listened, or
	// the backend never confirmed the end of the subscription) puts a
	// Turn with Granted set and Attempt 0 in the channel, unless an
	// Acquire with the token returned the key or a grant was delivered:
	// the caller releases the token then too. After cancel returns no
	// Turn is delivered, and the driver releases nothing on its own. A
	// plain wake-up left in the channel may have been the waiter's turn:
	// a caller that stops waiting passes it on. A subscription that
	// fails leaves the token to the caller. cancel must be called exactly
	// once.
	SubscribeHandoff(ctx context.Context, key, token string) (turns <-chan Turn, cancel func(), err error)
}

// Turn is a waiter's wake-up from a driver that hands off ([Handoff]).
type Turn struct {
	// Granted reports that the key is now held by the subscription's
	// token; otherwise the waiter is only woken to try again.
	Granted bool
	// Attempt is the [Queued.Attempt] of the queued attempt the grant
	// was made on, when Granted.
	Attempt uint64
	// Fence is the grant's fence, when Granted: as [Result.Fence].
	Fence uint64
}

// Queued is what makes an attempt a queued one ([Handoff.AcquireQueued]).
type Queued struct {
	// Wait says that the waiter tries again within Wait, or sooner when
	// its subscription wakes it: the driver keeps its place in the queue
	// that long. Zero means it does not try again: the attempt is not
	// queued.
	Wait time.Duration
	// Attempt numbers the waiter's attempts under its token: 1, 2, … in
	// the order they are sent. The driver keeps it with the queued
	// attempt and echoes it in the [Turn] of a grant made on that
	// attempt, from whose send time the waiter counts its lease. Zero
	// means the attempt is never handed a grant.
	Attempt uint64
}
