package dlock

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlock-go/dlock/driver"
	"golang.org/x/sync/errgroup"
)

// Renewal batching: one driver round trip refreshes up to batchSize leases;
// drivers without batching get up to parallelRefresh calls at once.
const (
	batchSize       = 1000
	parallelRefresh = 16
)

var errDeadline = errors.New("renewal not confirmed before the local deadline")

// renewer keeps a Locker's leases alive. One goroutine (the loop) watches
// every lease's next event, renewal or deadline, in a heap; it never does
// I/O itself, so a slow backend cannot delay a deadline. Renewals due
// together go out as one round, in a goroutine of its own, batched when the
// driver allows. The loop runs only while leases exist, so an idle Locker
// holds no goroutine; rounds are tracked by wg, and close waits for both.
type renewer struct {
	drv    driver.Locker
	batch  driver.BatchRefresher // nil if the driver cannot batch
	ctx    context.Context       // parent of refresh calls; ends at close
	cancel context.CancelFunc
	closed atomic.Bool
	wake   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	leases  leaseHeap
	running bool // the loop goroutine is alive
}

func newRenewer(d driver.Locker, batch driver.BatchRefresher) *renewer {
	ctx, cancel := context.WithCancel(context.Background())
	return &renewer{drv: d, batch: batch, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1)}
}

func (r *renewer) isClosed() bool { return r.closed.Load() }

// add schedules a newly acquired lease. sent is when the acquire request
// was sent: the lease's deadline counts from then.
func (r *renewer) add(ctx context.Context, req driver.Request, fence uint64, sent time.Time, cfg settings) (*Lease, error) {
	le := &Lease{
		key: req.Key, token: req.Token, owner: req.Owner, fence: fence,
		releaseTimeout: cfg.releaseTimeout,
		ttl:            req.TTL, renewEvery: cfg.renew, drift: cfg.drift,
		deadline: sent.Add(req.TTL - cfg.drift),
		index:    -1,
	}
	le.ctx, le.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
	if cfg.renew > 0 {
		le.nextRenew = sent.Add(cfg.renew)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		le.released = true
		le.cancel(fmt.Errorf("%w: %w", ErrLeaseLost, ErrClosed))
		return le, ErrClosed
	}
	heap.Push(&r.leases, le)
	r.kick()
	return le, nil
}

// kick makes the loop look at the heap again, starting it if needed.
// r.mu must be held.
func (r *renewer) kick() {
	if !r.running {
		if len(r.leases) == 0 || r.closed.Load() {
			return
		}
		r.running = true
		r.wg.Add(1)
		go r.loop()
		return
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *renewer) loop() {
	defer r.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		r.mu.Lock()
		if len(r.leases) == 0 || r.closed.Load() {
			r.running = false
			r.mu.Unlock()
			return
		}
		now := time.Now()
		var due []*Lease
		for len(r.leases) > 0 {
			le := r.leases[0]
			if le.next().After(now) {
				break
			}
			if !le.deadline.After(now) {
				r.lose(le, errDeadline)
				continue
			}
			le.refreshing = true
			heap.Fix(&r.leases, 0)
			due = append(due, le)
		}
		if len(due) > 0 {
			r.startRound(due)
		}
		if len(r.leases) > 0 {
			timer.Reset(r.leases[0].next().Sub(now))
		}
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
	r.wg.Go(func() {
		sent := time.Now()
		// No refresh outlives the last deadline it could save.
		ctx, cancel := context.WithDeadline(r.ctx, latest)
		errs := r.refresh(ctx, reqs)
		cancel()
		r.mu.Lock()
		defer r.mu.Unlock()
		for i, le := range due {
			r.result(le, sent, reqs[i].TTL, errs[i])
		}
		r.kick()
	})
}

func (r *renewer) refresh(ctx context.Context, reqs []driver.RefreshRequest) []error {
	if r.batch != nil {
		errs := make([]error, 0, len(reqs))
		for i := 0; i < len(reqs); i += batchSize {
			errs = append(errs, r.batch.RefreshBatch(ctx, reqs[i:min(i+batchSize, len(reqs))])...)
		}
		return errs
	}
	errs := make([]error, len(reqs))
	var g errgroup.Group
	g.SetLimit(parallelRefresh)
	for i, q := range reqs {
		g.Go(func() error {
			errs[i] = r.drv.Refresh(ctx, q.Key, q.Token, q.TTL)
			return nil
		})
	}
	g.Wait()
	return errs
}

// result applies the outcome of one lease's renewal. r.mu must be held.
func (r *renewer) result(le *Lease, sent time.Time, ttl time.Duration, err error) {
	if le.index < 0 {
		return // released or lost meanwhile
	}
	le.refreshing = false
	switch {
	case err == nil:
		r.confirmed(le, sent, ttl)
	case errors.Is(err, ErrNotHeld):
		r.lose(le, err)
	default:
		// Transient: try again soon; the deadline still stands.
		le.nextRenew = time.Now().Add(min(max(le.renewEvery/8, 5*time.Millisecond), time.Second))
		heap.Fix(&r.leases, le.index)
	}
}

// confirmed moves a lease's deadline after a successful refresh that was
// sent at sent. r.mu must be held.
func (r *renewer) confirmed(le *Lease, sent time.Time, ttl time.Duration) {
	if d := sent.Add(ttl - le.drift); d.After(le.deadline) {
		le.deadline = d
	}
	if le.renewEvery > 0 {
		le.nextRenew = sent.Add(le.renewEvery)
	}
	heap.Fix(&r.leases, le.index)
	r.kick()
}

// lose ends a lease that is no longer held. r.mu must be held.
func (r *renewer) lose(le *Lease, cause error) {
	r.remove(le)
	le.cancel(fmt.Errorf("%w: %q: %w", ErrLeaseLost, le.key, cause))
}

// remove unschedules a lease. r.mu must be held.
func (r *renewer) remove(le *Lease) {
	if le.index >= 0 {
		heap.Remove(&r.leases, le.index)
	}
}

// close stops renewal and returns the leases that were still held, marked
// released; the caller ends them.
func (r *renewer) close() []*Lease {
	r.mu.Lock()
	r.closed.Store(true)
	leases := make([]*Lease, len(r.leases))
	copy(leases, r.leases)
	for _, le := range leases {
		le.released = true
		le.index = -1
	}
	r.leases = nil
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	return leases
}

// next is when the lease needs the loop: its renewal, or its deadline if
// that comes first or no renewal is due.
func (le *Lease) next() time.Time {
	if !le.nextRenew.IsZero() && !le.refreshing && le.nextRenew.Before(le.deadline) {
		return le.nextRenew
	}
	return le.deadline
}

// leaseHeap orders leases by next event; it implements heap.Interface.
type leaseHeap []*Lease

func (h leaseHeap) Len() int           { return len(h) }
func (h leaseHeap) Less(i, j int) bool { return h[i].next().Before(h[j].next()) }
func (h leaseHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *leaseHeap) Push(x any) {
	le := x.(*Lease)
	le.index = len(*h)
	*h = append(*h, le)
}
func (h *leaseHeap) Pop() any {
	old := *h
	le := old[len(old)-1]
	old[len(old)-1] = nil
	le.index = -1
	*h = old[:len(old)-1]
	return le
}
