package linearize

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redlock"
)

// History collects operations from many clients: the driver calls that
// [Recorder]s see, and what the dlock calls that made them returned. It is
// safe for concurrent use.
type History struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	calls []returned
	nodes []*History // a quorum backend's nodes' histories, by node (see Node)
}

// returned is a dlock call that returned, as [History.Returned] notes it.
type returned struct {
	client int
	key    string
	tokens map[string]int64 // as CallTokens.tokens
	kept   string           // the lease's token, if the call returned one
	fence  uint64           // the lease's fence
	ret    int64
}

// NewHistory starts an empty history; times count from now.
func NewHistory() *History { return &History{start: time.Now()} }

// Now returns the history's clock, for Call and Return times.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Add records one operation.
func (h *History) Add(client int, in Input, call int64, out Output, ret int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// Returned notes that a dlock Acquire or TryAcquire call on key, whose
// context came from [WithTokens] with toks, returned at ret with lease
// (nil if it failed). [History.Operations] derives from it what the call
// means for its tokens.
func (h *History) Returned(client int, key string, toks *CallTokens, lease *dlock.Lease, ret int64) {
	c := returned{client: client, key: key, tokens: toks.snapshot(), ret: ret}
	if lease != nil {
		c.kept, c.fence = lease.Token(), lease.Fence()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, c)
}

// CallTokens collects the tokens of one dlock call's attempts and handoff
// subscriptions: the caller puts it in the call's context with
// [WithTokens], and a [Recorder] fills it.
type CallTokens struct {
	mu sync.Mutex
	// tokens maps each token to the History time of its first handoff
	// subscription, or -1 if it never subscribed for handoff.
	tokens map[string]int64
}

type callKey struct{}

// WithTokens returns a context whose driver attempts and handoff
// subscriptions, seen by a [Recorder], note their tokens in the returned
// set.
func WithTokens(ctx context.Context) (context.Context, *CallTokens) {
	t := &CallTokens{tokens: map[string]int64{}}
	return context.WithValue(ctx, callKey{}, t), t
}

func tokensOf(ctx context.Context) *CallTokens {
	t, _ := ctx.Value(callKey{}).(*CallTokens)
	return t
}

func (t *CallTokens) attempted(token string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.tokens[token]; !ok {
		t.tokens[token] = -1
	}
}

func (t *CallTokens) subscribed(token string, at int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if since, ok := t.tokens[token]; !ok || since < 0 {
		t.tokens[token] = at
	}
}

func (t *CallTokens) snapshot() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := make(map[string]int64, len(t.tokens))
	for tok, at := range t.tokens {
		m[tok] = at
	}
	return m
}

// Recorder is a driver that records every Acquire, Release, Refresh (single
// or batched) and RaiseFence of the driver it wraps in a History, and
// forwards every capability that package dlock uses, so that the program
// checked is the one users run:
//
//   - [driver.Notifier] and [driver.Handoff]: subscriptions go to the
//     wrapped driver, and their channels come back untouched. A relay
//     between the driver and dlock would change which of the two finds a
//     wake-up or a grant left in the channel when the waiter leaves (the
//     driver passes a turn on, or dlock does), and so check another
//     program. Grants are recorded from what they cause instead: a handoff
//     subscription notes its token and its start in the call's
//     [CallTokens], and [History.Operations] derives the grants the call
//     was handed ([HandedOff]) from the lease it returned and the
//     releases it made.
//   - [driver.Inspector] and [driver.BatchRefresher] (batched refreshes
//     are recorded item by item).
//   - [driver.FenceRaiser] and [redlock.FloorAcquirer], which only a
//     quorum driver uses of its nodes, so that a Recorder may stand for a
//     node (a quorum backend's runs record every node so, in
//     [History.Node]). Acquire, AcquireQueued and AcquireFloor are
//     recorded alike, as attempts.
//
// Where the wrapped driver lacks a capability, its methods answer errors
// wrapping errors.ErrUnsupported, as the driver package's rule for
// wrapping drivers says (RefreshBatch refreshes one by one).
//
// Recorder does not implement [driver.Semaphore]: the model is a lock, and
// a dlock semaphore (LeaseOptions.Limit) over a Recorder reports errors.ErrUnsupported rather
// than run calls the history would not see.
type Recorder struct {
	driver.Locker
	H      *History
	Client int // ClientId of the operations

	inflight    sync.Mutex // guards calls and peak
	calls, peak int
}

var (
	_ driver.Notifier       = (*Recorder)(nil)
	_ driver.Handoff        = (*Recorder)(nil)
	_ driver.Inspector      = (*Recorder)(nil)
	_ driver.BatchRefresher = (*Recorder)(nil)
	_ driver.FenceRaiser    = (*Recorder)(nil)
	_ redlock.FloorAcquirer = (*Recorder)(nil)
)

// PeakCalls reports the most Acquire, Release and Refresh calls the
// Recorder had in flight at once: calls a driver may carry in one batch.
func (r *Recorder) PeakCalls() int {
	r.inflight.Lock()
	defer r.inflight.Unlock()
	return r.peak
}

func (r *Recorder) enter() func() {
	r.inflight.Lock()
	r.calls++
	r.peak = max(r.peak, r.calls)
	r.inflight.Unlock()
	return func() {
		r.inflight.Lock()
		r.calls--
		r.inflight.Unlock()
	}
}

// classify maps a driver error to a Result.
func classify(err error, notHeld Result) Result {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, driver.ErrNotHeld):
		return notHeld
	case errors.Is(err, driver.ErrUnavailable), errors.Is(err, driver.ErrClosed):
		return NotApplied
	}
	return Unknown
}

func (r *Recorder) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	return r.attempt(ctx, req, func() (driver.Result, error) { return r.Locker.Acquire(ctx, req) })
}

// AcquireQueued implements [driver.Handoff] and records the call as an
// attempt.
func (r *Recorder) AcquireQueued(ctx context.Context, req driver.Request, q driver.Queued) (driver.Result, error) {
	h, ok := r.Locker.(driver.Handoff)
	if !ok {
		return driver.Result{}, r.unsupported("hand off")
	}
	return r.attempt(ctx, req, func() (driver.Result, error) { return h.AcquireQueued(ctx, req, q) })
}

// AcquireFloor implements [redlock.FloorAcquirer] and records the call as
// an attempt.
func (r *Recorder) AcquireFloor(ctx context.Context, req driver.Request, floor uint64) (driver.Result, error) {
	fa, ok := r.Locker.(redlock.FloorAcquirer)
	if !ok {
		return driver.Result{}, r.unsupported("honour fence floors")
	}
	return r.attempt(ctx, req, func() (driver.Result, error) { return fa.AcquireFloor(ctx, req, floor) })
}

// attempt records acquire, an attempt of req.
func (r *Recorder) attempt(ctx context.Context, req driver.Request, acquire func() (driver.Result, error)) (driver.Result, error) {
	if t := tokensOf(ctx); t != nil {
		t.attempted(req.Token)
	}
	defer r.enter()()
	call := r.H.Now()
	res, err := acquire()
	out := Output{Result: classify(err, Unknown)}
	switch {
	case err == nil && res.Acquired:
		out.Fence = res.Fence
	case err == nil:
		out.Result = Busy
	}
	r.H.Add(r.Client, Input{Kind: Attempt, Key: req.Key, Token: req.Token}, call, out, r.H.Now())
	return res, err
}

func (r *Recorder) Release(ctx context.Context, key, token string) error {
	defer r.enter()()
	call := r.H.Now()
	err := r.Locker.Release(ctx, key, token)
	r.H.Add(r.Client, Input{Kind: Release, Key: key, Token: token}, call, Output{Result: classify(err, NotHeld)}, r.H.Now())
	return err
}

func (r *Recorder) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	defer r.enter()()
	call := r.H.Now()
	err := r.Locker.Refresh(ctx, key, token, ttl)
	r.H.Add(r.Client, Input{Kind: Refresh, Key: key, Token: token}, call, Output{Result: classify(err, NotHeld)}, r.H.Now())
	return err
}

// RefreshBatch implements [driver.BatchRefresher] with the wrapped
// driver's batch, or one Refresh per request if it cannot batch.
func (r *Recorder) RefreshBatch(ctx context.Context, reqs []driver.RefreshRequest) []error {
	defer r.enter()()
	call := r.H.Now()
	errs := driver.RefreshBatch(ctx, r.Locker, reqs)
	ret := r.H.Now()
	for i, q := range reqs {
		r.H.Add(r.Client, Input{Kind: Refresh, Key: q.Key, Token: q.Token}, call, Output{Result: classify(errs[i], NotHeld)}, ret)
	}
	return errs
}

// Subscribe implements [driver.Notifier].
func (r *Recorder) Subscribe(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	n, ok := r.Locker.(driver.Notifier)
	if !ok {
		return nil, nil, r.unsupported("notify releases")
	}
	return n.Subscribe(ctx, key)
}

// SubscribeHandoff implements [driver.Handoff]: it notes token in the
// call's [CallTokens] with the time the subscription began, from which on
// a release may hand it the key, and returns the wrapped driver's channel.
func (r *Recorder) SubscribeHandoff(ctx context.Context, key, token string) (<-chan driver.Turn, func(), error) {
	h, ok := r.Locker.(driver.Handoff)
	if !ok {
		return nil, nil, r.unsupported("hand off")
	}
	since := r.H.Now()
	turns, cancel, err := h.SubscribeHandoff(ctx, key, token)
	if err == nil {
		if t := tokensOf(ctx); t != nil {
			t.subscribed(token, since)
		}
	}
	return turns, cancel, err
}

// Inspect implements [driver.Inspector].
func (r *Recorder) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	in, ok := r.Locker.(driver.Inspector)
	if !ok {
		return driver.Holder{}, false, r.unsupported("inspect")
	}
	return in.Inspect(ctx, key)
}

// RaiseFence implements [driver.FenceRaiser] and records the call.
func (r *Recorder) RaiseFence(ctx context.Context, key, token string, fence uint64) error {
	fr, ok := r.Locker.(driver.FenceRaiser)
	if !ok {
		return r.unsupported("raise fences")
	}
	defer r.enter()()
	call := r.H.Now()
	err := fr.RaiseFence(ctx, key, token, fence)
	r.H.Add(r.Client, Input{Kind: RaiseFence, Key: key, Token: token, Fence: fence}, call, Output{Result: classify(err, NotHeld)}, r.H.Now())
	return err
}

func (r *Recorder) unsupported(what string) error {
	return fmt.Errorf("linearize: wrapped driver %T cannot %s: %w", r.Locker, what, errors.ErrUnsupported)
}
