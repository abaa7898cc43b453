package dlock

import (
	"context"
	"log/slog"
	"time"
)

// EventKind says what happened to a lock; see [Event].
type EventKind int

// Kinds of [Event], in the order a lease meets them.
const (
	// EventBusy: an attempt found the key held by someone else.
	EventBusy EventKind = iota + 1
	// EventGranted: Acquire or TryAcquire returned a lease. Duration is
	// the time the call took, waiting included.
	EventGranted
	// EventNotAcquired: Acquire or TryAcquire returned an error. Duration
	// is the time the call took; Err is the error.
	EventNotAcquired
	// EventRefreshed: a renewal, automatic or by [Lease.Refresh], was
	// confirmed. Duration is its round trip.
	EventRefreshed
	// EventRefreshFailed: a renewal failed; Err is why. The lease lives on
	// until its deadline unless Err wraps ErrNotHeld.
	EventRefreshFailed
	// EventLost: the lease was lost; Err wraps ErrLeaseLost and the cause
	// (ErrNotHeld, ErrClosed, or renewal not confirmed in time). Duration
	// is how long it was held. It comes once per lease, before any
	// EventReleased.
	EventLost
	// EventReleased: the lease was released. Duration is how long it was
	// held; Err is the release's error, if any: it wraps ErrLeaseLost
	// exactly when an EventLost was reported for the lease.
	EventReleased
	// EventElected: an [Election] candidate became leader.
	EventElected
	// EventDemoted: an [Election] leader stepped down; Err is the cause,
	// as passed to ElectionOptions.OnDemoted.
	EventDemoted
)

var kindNames = [...]string{"", "busy", "granted", "not_acquired", "refreshed", "refresh_failed", "lost", "released", "elected", "demoted"}

// String returns the kind's snake_case name, such as "granted".
func (k EventKind) String() string {
	if k <= 0 || int(k) >= len(kindNames) {
		return "unknown"
	}
	return kindNames[k]
}

// Event describes something that happened to a lock. It never carries the
// lease's token.
type Event struct {
	Kind     EventKind
	Key      string
	Owner    string
	Fence    uint64 // 0 before a grant
	Duration time.Duration
	Err      error
}

// Observer receives a Locker's events, for metrics and tracing (package
// dlockotel turns them into OpenTelemetry instruments). Observe is called
// synchronously, never with a dlock lock held, from many goroutines at once;
// it must be fast and safe for concurrent use. ctx carries the values of the
// context of the call that started the lease (a trace span, say).
type Observer interface {
	Observe(ctx context.Context, e Event)
}

// observer is what a lease or call reports to: the user's Observer and
// logger, either possibly nil.
type observer struct {
	o   Observer
	log *slog.Logger
}

func (ob observer) enabled() bool { return ob.o != nil || ob.log != nil }

// emit reports e. Only losses and repeated refresh failures are logged:
// nothing per successful operation.
func (ob observer) emit(ctx context.Context, e Event, failures int) {
	if ob.o != nil {
		ob.o.Observe(ctx, e)
	}
	if ob.log == nil {
		return
	}
	switch {
	case e.Kind == EventLost:
		ob.log.LogAttrs(ctx, slog.LevelWarn, "dlock: lease lost",
			slog.String("key", e.Key), slog.String("owner", e.Owner), slog.Uint64("fence", e.Fence),
			slog.Duration("held", e.Duration), slog.Any("cause", e.Err))
	case e.Kind == EventRefreshFailed && failures > 1 && failures&(failures-1) == 0:
		// 2, 4, 8…: a backend that stays away does not flood the log.
		ob.log.LogAttrs(ctx, slog.LevelWarn, "dlock: lease refresh failing",
			slog.String("key", e.Key), slog.String("owner", e.Owner), slog.Uint64("fence", e.Fence),
			slog.Int("failures", failures), slog.Any("cause", e.Err))
	}
}

// leaseEvent is an event waiting to be reported once the renewer's mutex is
// released.
type leaseEvent struct {
	le       *Lease
	e        Event
	failures int
}
