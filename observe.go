package dlock

import (
	"context"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
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
	Limit    int    // a semaphore's limit; 0 for a lock
	Duration time.Duration
	Err      error
}

// observer is what a lease or call reports to: the user's Observer and
// logger, either possibly nil, and the Locker's event queue.
type observer struct {
	o   func(ctx context.Context, e Event)
	log *slog.Logger
	q   *eventQueue
}

func (ob observer) enabled() bool { return ob.o != nil || ob.log != nil }

// emit reports e: on the caller's goroutine if nothing waits to be
// reported, otherwise after what waits, on the queue's goroutine.
func (ob observer) emit(ctx context.Context, e Event, failures int) {
	if !ob.enabled() {
		return
	}
	if ob.q == nil {
		ob.deliver(ctx, e, failures)
		return
	}
	if !ob.q.enter() {
		ob.q.push(ob, ctx, e, failures)
		return
	}
	defer ob.q.leave()
	ob.deliver(ctx, e, failures)
}

// post queues e for the queue's goroutine: for events noted by the renewal
// machinery, which never calls user code itself.
func (ob observer) post(ctx context.Context, e Event, failures int) {
	if ob.enabled() && ob.q != nil {
		ob.q.push(ob, ctx, e, failures)
	}
}

// deliver calls the Observer and the logger, recovering their panics. Only
// losses and repeated refresh failures are logged: nothing per successful
// operation.
func (ob observer) deliver(ctx context.Context, e Event, failures int) {
	if ob.o != nil {
		ob.call(func() { ob.o(ctx, e) }, "Observer")
	}
	if ob.log == nil {
		return
	}
	switch {
	case e.Kind == EventLost:
		ob.call(func() {
			ob.log.LogAttrs(ctx, slog.LevelWarn, "dlock: lease lost",
				slog.String("key", e.Key), slog.String("owner", e.Owner), slog.Uint64("fence", e.Fence),
				slog.Duration("held", e.Duration), slog.Any("cause", e.Err))
		}, "Logger")
	case e.Kind == EventRefreshFailed && failures > 1 && failures&(failures-1) == 0:
		// 2, 4, 8…: a backend that stays away does not flood the log.
		ob.call(func() {
			ob.log.LogAttrs(ctx, slog.LevelWarn, "dlock: lease refresh failing",
				slog.String("key", e.Key), slog.String("owner", e.Owner), slog.Uint64("fence", e.Fence),
				slog.Int("failures", failures), slog.Any("cause", e.Err))
		}, "Logger")
	}
}

// call runs f, a call of user code, and recovers its panic: the first one
// of the Locker is logged, to the Logger unless it is what panicked.
func (ob observer) call(f func(), what string) {
	defer func() {
		if v := recover(); v != nil && ob.q != nil && ob.q.panicked.CompareAndSwap(false, true) {
			ob.warn(what == "Logger", "dlock: "+what+" panicked; the panic was recovered, later ones are not logged",
				slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
		}
	}()
	f()
}

// warn logs a problem of the Observer or Logger itself: to the Logger,
// unless it is the problem, else to slog.Default.
func (ob observer) warn(notLogger bool, msg string, attrs ...slog.Attr) {
	log := ob.log
	if log == nil || notLogger {
		log = slog.Default()
	}
	defer func() { _ = recover() }() // a Logger that panics again stays silent
	log.LogAttrs(context.Background(), slog.LevelError, msg, attrs...)
}

// maxQueued bounds the events waiting for a slow Observer.
const maxQueued = 1 << 16

// eventQueue orders a Locker's events and reports those that cannot be
// reported at once, on a goroutine that runs while some wait.
type eventQueue struct {
	mu         sync.Mutex
	idle       sync.Cond // signalled when active drops to 0
	items      []queuedEvent
	spare      []queuedEvent // the last batch's array, for reuse
	running    bool          // the goroutine is alive
	active     int           // events being reported on callers' goroutines
	dropped    bool          // events were dropped since the last report
	panicked   atomic.Bool   // a panic was logged
	dropLogged atomic.Bool   // dropped events were logged
}

// kindDropped marks where events were dropped, in the queue.
const kindDropped EventKind = -1

type queuedEvent struct {
	ob       observer
	ctx      context.Context
	e        Event
	failures int
}

func newEventQueue() *eventQueue {
	q := &eventQueue{}
	q.idle.L = &q.mu
	return q
}

// enter reports whether the caller may report an event itself: nothing
// waits and the goroutine is not running. leave must follow.
func (q *eventQueue) enter() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.running {
		return false
	}
	q.active++
	return true
}

func (q *eventQueue) leave() {
	q.mu.Lock()
	q.active--
	if q.active == 0 {
		q.idle.Broadcast()
	}
	q.mu.Unlock()
}

// push queues an event and starts the goroutine if needed. It never
// blocks on user code.
func (q *eventQueue) push(ob observer, ctx context.Context, e Event, failures int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) >= maxQueued {
		if !q.dropped {
			q.dropped = true
			q.items = append(q.items, queuedEvent{ob: ob, ctx: ctx, e: Event{Kind: kindDropped}})
		}
		return
	}
	q.items = append(q.items, queuedEvent{ob, ctx, e, failures})
	if !q.running {
		q.running = true
		go q.run()
	}
}

// run reports queued events in order, after those being reported on
// callers' goroutines, and exits when none is left.
func (q *eventQueue) run() {
	q.mu.Lock()
	for {
		for q.active > 0 {
			q.idle.Wait()
		}
		if len(q.items) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		batch := q.items
		q.items, q.spare = q.spare[:0], nil
		q.mu.Unlock()
		for i, it := range batch {
			if it.e.Kind == kindDropped {
				if q.dropLogged.CompareAndSwap(false, true) {
					it.ob.warn(false, "dlock: Observer or Logger falls behind: events were dropped (logged once)")
				}
			} else {
				it.ob.deliver(it.ctx, it.e, it.failures)
			}
			batch[i] = queuedEvent{}
		}
		q.mu.Lock()
		q.dropped = false
		q.spare = batch[:0]
	}
}

// note queues an event of le for the Locker's event goroutine. r.mu must be
// held, so that a lease's events are queued in the order they happen.
//
// Until the lease's EventGranted is reported (see granted), its events wait
// in the lease: the Acquire call may be slow to return after the grant (an
// unsubscribe round trip), and a renewal may happen meanwhile.
func (r *renewer) note(le *Lease, kind EventKind, d time.Duration, err error) {
	switch {
	case !le.obs.enabled():
	case le.grantPending:
		// An Observer blocking on EventGranted must not grow it forever;
		// EventLost, once per lease, is always kept.
		if len(le.held) < maxHeld || kind == EventLost {
			le.held = append(le.held, heldEvent{le.event(kind, d, err), le.failures})
		}
	default:
		le.obs.post(le.ctx, le.event(kind, d, err), le.failures)
	}
}

// maxHeld bounds the events a lease keeps until its EventGranted is
// reported; later ones but EventLost are dropped.
const maxHeld = 64

// heldEvent is an event noted before its lease's EventGranted was reported.
type heldEvent struct {
	e        Event
	failures int
}

// granted queues the events that le noted before its EventGranted was
// reported, and lets later ones go out at once.
func (r *renewer) granted(le *Lease) {
	r.mu.Lock()
	defer r.mu.Unlock()
	le.grantPending = false
	for _, h := range le.held {
		le.obs.post(le.ctx, h.e, h.failures)
	}
	le.held = nil
}

// event describes le for an observer.
func (le *Lease) event(kind EventKind, d time.Duration, err error) Event {
	return Event{Kind: kind, Key: le.key, Owner: le.owner, Fence: le.fence, Limit: le.ops.limit(), Duration: d, Err: err}
}
