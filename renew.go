package dlock

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/leasetime"
)

// Renewal limits: one driver round trip refreshes up to batchSize leases
// (drivers without batching get a few Refresh calls at once, see
// driver.RefreshBatch); at most maxRounds rounds run at a time, and
// renewals that come due meanwhile wait for the next round, which batches
// them together.
const (
	batchSize = 1000
	maxRounds = 4
)

var errDeadline = errors.New("renewal not confirmed before the local deadline")

// renewer keeps a Locker's leases alive. It never does I/O on its loop, so
// a slow backend cannot delay a deadline, and neither the loop nor a round
// calls user code: their events are queued for the Locker's event
// goroutine (see Observer), so a slow Observer cannot either.
//
// Goroutines and timers: at most one loop goroutine runs at a time
// (running, under mu). It watches two heaps, every lease's deadline and the
// next renewal of those not being refreshed, and sleeps on r.timer, the
// only timer; the timer outlives the loop so that restarts reuse it, and
// only the goroutine that set running=true may touch it until it sets
// running=false: the loop stops it under mu just before, so a loop started
// by kick right after owns it alone. Renewals due together go out as one
// round, in a goroutine of its own (at most maxRounds at once), batched
// when the driver allows; a round touches no timer and ends with kick. The
// loop exits once no lease is left for idleLinger, or at close; wg counts
// the loop and the rounds, and close waits for both.
type renewer struct {
	drv    driver.Locker
	ctx    context.Context // parent of refresh calls; ends at close
	cancel context.CancelFunc
	closed atomic.Bool
	wake   chan struct{}
	wg     sync.WaitGroup

	mu        sync.Mutex
	deadlines leaseHeap   // every scheduled lease, by deadline
	renewals  leaseHeap   // leases waiting for their next renewal, by time
	epoch     time.Time   // anchors the renewal grid; see onGrid
	rounds    int         // renewal rounds in flight
	running   bool        // the loop goroutine is alive
	timer     *time.Timer // the loop's, kept across its restarts
	wakeAt    time.Time   // when the loop's timer fires; see kick
}

func newRenewer(d driver.Locker) *renewer {
	ctx, cancel := context.WithCancel(context.Background())
	return &renewer{
		drv: d, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1), epoch: time.Now(),
		deadlines: leaseHeap{at: func(le *Lease) time.Time { return le.deadline }, pos: func(le *Lease) *int { return &le.deadlineAt }},
		renewals:  leaseHeap{at: func(le *Lease) time.Time { return le.nextRenew }, pos: func(le *Lease) *int { return &le.renewAt }},
	}
}

func (r *renewer) isClosed() bool { return r.closed.Load() }

// add schedules a newly acquired lease. sent is when the acquire request
// was sent: the lease's deadline counts from then. ttlCap, if not 0, is the
// longest TTL the lease may ask for later (see Lease.Refresh): an attempt
// with its token may still land.
func (r *renewer) add(ctx context.Context, l *Locker, req driver.Request, fence uint64, sent time.Time, cfg settings, ops keyOps, ttlCap time.Duration) (*Lease, error) {
	if req.NoFence {
		fence = 0 // whatever the driver made of it: see Options.DisableFencing
	}
	le := &Lease{
		l: l, key: req.Key, token: req.Token, owner: req.Owner, fence: fence,
		releaseTimeout: cfg.releaseTimeout, obs: cfg.obs, acquired: sent, ops: ops,
		ttl: req.TTL, renewEvery: cfg.renew, drift: cfg.drift, renewSet: cfg.renewSet, driftSet: cfg.driftSet,
		deadlineAt: -1, renewAt: -1, grantPending: cfg.obs.enabled(), ttlCap: ttlCap,
	}
	r.setDeadline(le, sent.Add(req.TTL-cfg.drift))
	le.ctx, le.cancel = context.WithCancelCause(detached(ctx))
	le.outer = leaseContext{Context: le.ctx, le: le}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		le.released = true
		le.cancel(fmt.Errorf("%w: %w", ErrLeaseLost, ErrClosed))
		return le, ErrClosed
	}
	heap.Push(&r.deadlines, le)
	r.scheduleRenewal(le, r.onGrid(le, sent.Add(le.renewEvery)))
	r.kick()
	return le, nil
}

// detached returns ctx without its cancellation and deadline, as
// context.WithoutCancel does, and ctx itself when it has neither (as
// context.Background and its values have), which costs no allocation.
func detached(ctx context.Context) context.Context {
	if _, ok := ctx.Deadline(); ok || ctx.Done() != nil {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

// kick makes the loop look at the heaps again, starting it if needed.
// r.mu must be held.
func (r *renewer) kick() {
	if !r.running {
		if r.deadlines.Len() == 0 || r.closed.Load() {
			return
		}
		r.running = true
		r.wg.Add(1)
		go r.loop()
		return
	}
	// The loop's timer covers everything due from wakeAt on: wake it only
	// for something earlier, or to start idling, so that adding a lease
	// (due a renewal interval later) costs no goroutine switch.
	if r.deadlines.Len() == 0 || r.nextEvent().Before(r.wakeAt) {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// idleLinger is how long the loop outlives the last lease: a Locker that
// takes and releases leases in a row then keeps one goroutine and timer
// instead of starting them for every lease.
const idleLinger = 100 * time.Millisecond

// testHookLoopExit, if set, runs when the loop has given up r.mu for the
// last time and is about to return.
var testHookLoopExit func()

// nextEvent returns when the loop must look at the heaps again: the first
// deadline, or an earlier renewal if a round may start then. r.mu must be
// held, and a lease scheduled.
func (r *renewer) nextEvent() time.Time {
	next := r.deadlines.top().deadline
	if r.rounds < maxRounds && r.renewals.Len() > 0 && r.renewals.top().nextRenew.Before(next) {
		next = r.renewals.top().nextRenew
	}
	return next
}

func (r *renewer) loop() {
	defer r.wg.Done()
	if r.timer == nil { // made here, so that it belongs to the loop's synctest bubble
		r.timer = time.NewTimer(time.Hour)
	}
	timer := r.timer
	var idleSince time.Time
	for {
		r.mu.Lock()
		now := time.Now()
		if r.deadlines.Len() > 0 {
			idleSince = time.Time{}
		}
		if r.closed.Load() || !idleSince.IsZero() && now.Sub(idleSince) >= idleLinger {
			// Stop the timer while still its owner: once running is
			// false, a new loop may reset it.
			timer.Stop()
			r.running = false
			r.mu.Unlock()
			if testHookLoopExit != nil {
				testHookLoopExit()
			}
			return
		}
		for r.deadlines.Len() > 0 && !r.deadlines.top().deadline.After(now) {
			r.lose(r.deadlines.top(), errDeadline)
		}
		if r.rounds < maxRounds {
			var due []*Lease
			for r.renewals.Len() > 0 && !r.renewals.top().nextRenew.After(now) {
				le := heap.Pop(&r.renewals).(*Lease)
				le.refreshing = true
				due = append(due, le)
			}
			if len(due) > 0 {
				r.startRound(due)
			}
		}
		if r.deadlines.Len() > 0 {
			r.wakeAt = r.nextEvent()
		} else {
			if idleSince.IsZero() {
				idleSince = now
			}
			r.wakeAt = idleSince.Add(idleLinger)
		}
		timer.Reset(r.wakeAt.Sub(now))
		r.mu.Unlock()
		select {
		case <-timer.C:
		case <-r.wake:
		case <-r.ctx.Done():
		}
	}
}

// startRound refreshes due leases in a goroutine. r.mu must be held.
func (r *renewer) startRound(due []*Lease) {
	reqs := make([]driver.RefreshRequest, len(due))
	latest := due[0].deadline
	for i, le := range due {
		reqs[i] = driver.RefreshRequest{Key: le.key, Token: le.token, TTL: le.ttl}
		if le.deadline.After(latest) {
			latest = le.deadline
		}
	}
	r.rounds++
	r.wg.Go(func() {
		sent := time.Now()
		// No refresh outlives the last deadline it could save.
		ctx, cancel := context.WithDeadline(r.ctx, latest)
		errs := r.refreshDue(ctx, due, reqs)
		cancel()
		r.mu.Lock()
		defer r.mu.Unlock()
		r.rounds--
		for i, le := range due {
			r.result(le, sent, reqs[i].TTL, errs[i])
		}
		r.kick()
	})
}

func (r *renewer) refresh(ctx context.Context, reqs []driver.RefreshRequest) []error {
	errs := make([]error, 0, len(reqs))
	for i := 0; i < len(reqs); i += batchSize {
		errs = append(errs, driver.RefreshBatch(ctx, r.drv, reqs[i:min(i+batchSize, len(reqs))])...)
	}
	return errs
}

// result applies the outcome of one lease's renewal. r.mu must be held.
func (r *renewer) result(le *Lease, sent time.Time, ttl time.Duration, err error) {
	r.endRefresh(le)
	if le.deadlineAt < 0 {
		return // released or lost meanwhile
	}
	switch {
	case err == nil:
		r.confirmed(le, sent, ttl)
	case errors.Is(err, ErrNotHeld):
		r.lose(le, err)
	default:
		r.failed(le, sent, le.timing(), err)
	}
}

// endRefresh marks the end of le's refresh in flight and wakes a
// [Lease.Refresh] waiting for it. r.mu must be held.
func (r *renewer) endRefresh(le *Lease) {
	le.refreshing = false
	if le.refreshDone != nil {
		close(le.refreshDone)
		le.refreshDone = nil
	}
}

// confirmed moves a lease's deadline after a successful refresh that was
// sent at sent. A lease's refreshes never overlap, so this one is the last
// the backend applied: the deadline follows its TTL, earlier or later.
// r.mu must be held.
func (r *renewer) confirmed(le *Lease, sent time.Time, ttl time.Duration) {
	le.failures = 0
	// The deadline first: an Observer may read ValidUntil on the event
	// (dlock's CLI hands it to the process that kills the job).
	r.setDeadline(le, sent.Add(ttl-le.drift))
	r.note(le, EventRefreshed, time.Since(sent), nil)
	r.scheduleRenewal(le, r.onGrid(le, sent.Add(le.renewEvery)))
	r.kick()
}

// failed handles a refresh, sent at sent with settings t, that ended with a
// transient error: the backend may have applied it or not. The deadline
// stands unless t's TTL was shorter; then it moves earlier to match, as the
// backend may now expire the key sooner. If the outcome is unknown, the
// request may also land later, after other refreshes, and set the expiry
// back to t's TTL then: the lease never asks for a longer TTL again, and
// renews with t's if it is shorter. A renewal is tried again soon. r.mu
// must be held.
func (r *renewer) failed(le *Lease, sent time.Time, t leasetime.Settings, err error) {
	le.failures++
	if driver.OutcomeUnknown(err) {
		if t.TTL < le.ttl {
			le.setTiming(t)
		}
		if le.ttlCap == 0 || t.TTL < le.ttlCap {
			le.ttlCap = t.TTL
		}
	}
	r.note(le, EventRefreshFailed, time.Since(sent), err)
	if d := sent.Add(t.TTL - t.Drift); d.Before(le.deadline) {
		r.setDeadline(le, d)
	}
	retry := min(max(le.renewEvery/8, 5*time.Millisecond), time.Second)
	if le.renewEvery > 0 {
		r.scheduleRenewal(le, time.Now().Add(retry))
	}
	r.kick()
}

// setDeadline sets le's local deadline, for the loop (the heap) and for
// readers that take no lock (deadlineNs). r.mu must be held.
func (r *renewer) setDeadline(le *Lease, d time.Time) {
	le.deadline = d
	le.deadlineNs.Store(int64(d.Sub(r.epoch)))
	if le.deadlineAt >= 0 {
		heap.Fix(&r.deadlines, le.deadlineAt)
	}
	for c := range le.margins { // their cut-offs follow the deadline
		c.timer.Reset(c.until())
	}
}

// expire ends le if its local deadline has passed and the loop has not
// noticed yet: a holder looking at its lease after a pause learns of the
// loss at once, whichever goroutine runs first.
func (r *renewer) expire(le *Lease) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if le.deadlineAt >= 0 && le.expired() { // counts a suspend, unlike le.deadline
		r.lose(le, errDeadline)
		r.kick()
	}
}

// onGrid moves a renewal due at at to a grid of the lease's renewal
// interval, anchored at the renewer's start, so that leases with the same
// interval are renewed in the same round, in one batch, however their
// acquires were spread: after one interval they all sit on the grid. The
// move is at most half an interval early, and late only by half the slack
// the lease has left before its deadline.
func (r *renewer) onGrid(le *Lease, at time.Time) time.Time {
	every := le.renewEvery
	if every <= 0 {
		return at
	}
	late := min(every/2, (le.ttl-le.drift-every)/2)
	d := at.Sub(r.epoch) - every/2
	g := r.epoch.Add((d + every - 1) / every * every)
	if g.After(at.Add(late)) {
		return at
	}
	return g
}

// scheduleRenewal plans le's next renewal at at, unless automatic renewal
// is off. A lease in a round is rescheduled when the round ends. r.mu must
// be held.
func (r *renewer) scheduleRenewal(le *Lease, at time.Time) {
	if le.renewEvery <= 0 {
		return
	}
	le.nextRenew = at
	switch {
	case le.refreshing:
	case le.renewAt >= 0:
		heap.Fix(&r.renewals, le.renewAt)
	default:
		heap.Push(&r.renewals, le)
	}
}

// lose ends a lease that is no longer held. r.mu must be held.
func (r *renewer) lose(le *Lease, cause error) {
	r.remove(le)
	err := fmt.Errorf("%w: %q: %w", ErrLeaseLost, le.key, cause)
	le.cancel(err)
	r.note(le, EventLost, time.Since(le.acquired), err)
}

// remove unschedules a lease. r.mu must be held.
func (r *renewer) remove(le *Lease) {
	if le.deadlineAt >= 0 {
		heap.Remove(&r.deadlines, le.deadlineAt)
	}
	if le.renewAt >= 0 {
		heap.Remove(&r.renewals, le.renewAt)
	}
}

// close stops renewal and returns the leases that were still held, lost
// with a cause wrapping ErrClosed before it waits for rounds in flight, so
// that they report it from the moment Close began. Their holders have not
// released them: a later Lease.Release reports the loss. The caller frees
// their keys on the backend.
func (r *renewer) close() []*Lease {
	r.mu.Lock()
	r.closed.Store(true)
	leases := slices.Clone(r.deadlines.items)
	for _, le := range leases {
		r.lose(le, ErrClosed)
	}
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	return leases
}

// leaseHeap orders leases by the time at returns, keeping each lease's
// position in the field pos points to (-1 when absent). It implements
// heap.Interface.
type leaseHeap struct {
	items []*Lease
	at    func(*Lease) time.Time
	pos   func(*Lease) *int
}

func (h *leaseHeap) top() *Lease        { return h.items[0] }
func (h *leaseHeap) Len() int           { return len(h.items) }
func (h *leaseHeap) Less(i, j int) bool { return h.at(h.items[i]).Before(h.at(h.items[j])) }
func (h *leaseHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	*h.pos(h.items[i]) = i
	*h.pos(h.items[j]) = j
}
func (h *leaseHeap) Push(x any) {
	le := x.(*Lease)
	*h.pos(le) = len(h.items)
	h.items = append(h.items, le)
}
func (h *leaseHeap) Pop() any {
	n := len(h.items) - 1
	le := h.items[n]
	h.items[n] = nil
	*h.pos(le) = -1
	h.items = h.items[:n]
	return le
}

// refreshDue refreshes a renewal round's leases, reqs[i] for due[i]: the
// locks in batches of Refresh, the slots in batches of RefreshSlots. A
// round of locks alone goes out as it is, without a copy.
func (r *renewer) refreshDue(ctx context.Context, due []*Lease, reqs []driver.RefreshRequest) []error {
	var slotIdx, lockIdx []int
	for i, le := range due {
		if _, slot := le.ops.(slotOps); slot {
			slotIdx = append(slotIdx, i)
		}
	}
	if len(slotIdx) == 0 {
		return r.refresh(ctx, reqs)
	}
	for i, le := range due {
		if _, slot := le.ops.(slotOps); !slot {
			lockIdx = append(lockIdx, i)
		}
	}
	errs := make([]error, len(reqs))
	pick := func(idx []int) []driver.RefreshRequest {
		out := make([]driver.RefreshRequest, len(idx))
		for j, i := range idx {
			out[j] = reqs[i]
		}
		return out
	}
	if len(lockIdx) > 0 {
		for j, err := range r.refresh(ctx, pick(lockIdx)) {
			errs[lockIdx[j]] = err
		}
	}
	slots := due[slotIdx[0]].ops.(slotOps).s // one driver: every slot of a Locker's has the same
	sreqs := pick(slotIdx)
	for from := 0; from < len(sreqs); from += batchSize {
		chunk := sreqs[from:min(from+batchSize, len(sreqs))]
		got := slots.RefreshSlots(ctx, chunk)
		for j := range chunk {
			err := fmt.Errorf("dlock: RefreshSlots of %T returned %d results for %d requests", slots, len(got), len(chunk))
			if len(got) == len(chunk) {
				err = got[j]
			}
			errs[slotIdx[from+j]] = err
		}
	}
	return errs
}
