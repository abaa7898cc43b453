package linearize

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// Operations returns the recorded driver calls, and for each dlock call
// that returned:
//
//   - a [GiveUp] at its return for every token of it but the lease's;
//   - a [HandedOff] grant, from the token's handoff subscription to the
//     return, of the lease's fence to the lease's token, if no Acquire
//     reported that grant (it came in a Turn), and of an unknown fence,
//     maybe, to a token that a Release freed before the return (a grant
//     that came in a Turn and was released unused; the token may have
//     been granted again by an attempt since, as when dlock passes a turn
//     on).
//
// An attempt of unknown outcome may take effect until its call returned,
// not only until the driver returned it: a driver that returns at the
// context's deadline may still deliver the command (a batch written after
// its callers left), and dlock's undo Release, ordered after it, frees
// what it granted. Its operation lasts until just before the call's
// return, where the token's [GiveUp] requires that it no longer holds the
// key; and no later than the latest return of a Release of the token
// that may have freed it, after which a grant would stay until the
// GiveUp.
// (If no Release of the token may have freed the key, a grant by the
// attempt is illegal whenever it lands, and the attempt keeps its span.)
// If a Release of the token found the key held and nothing else could
// have granted it to the token (no other Attempt, no handoff
// subscription), the attempt was granted ([Input.Granted]): the model
// then need not try it ungranted, which porcupine would only find wrong
// at the Release, after a long search; so was a maybe-grant by handoff
// of a token that no attempt may have granted. If no Release of the
// token may have freed the key and its call gave it up, the attempt is
// void ([Input.Void]): a grant would fail at the GiveUp.
//
// A busy attempt is excused (see [Input.Excused]) if it overlaps the
// handoff subscription of another token, from its start to its call's
// return, or, if quorum is set, an attempt of another token that was not
// granted.
func (h *History) Operations(quorum bool) []porcupine.Operation {
	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	calls := append([]returned(nil), h.calls...)
	h.mu.Unlock()

	type grant struct {
		token string
		fence uint64
	}
	// The latest return of a Release that may have freed each token: a
	// grant landing after it stays until the token's GiveUp, illegal
	// wherever it lands, so an attempt extends no further (which keeps
	// porcupine's search small).
	lastFree := map[string]int64{}
	// Tokens that a Release found holding the key, and how many Attempts
	// that may have granted each token there were.
	freed := map[string]bool{}
	grantable := map[string]int{}
	for _, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		switch {
		case in.Kind == Release && (out.Result == OK || out.Result == Unknown):
			lastFree[in.Token] = max(lastFree[in.Token], op.Return)
			freed[in.Token] = freed[in.Token] || out.Result == OK
		case in.Kind == Attempt && (out.Result == OK || out.Result == Unknown):
			grantable[in.Token]++
		}
	}
	returnOf := map[string]int64{}  // each token's call's return
	subscribed := map[string]bool{} // tokens a handoff may have granted
	givenUp := map[string]bool{}    // tokens their call gave up
	for _, c := range calls {
		for tok, sub := range c.tokens {
			returnOf[tok] = c.ret
			subscribed[tok] = sub >= 0
			givenUp[tok] = tok != c.kept
		}
	}
	granted := map[grant]bool{}      // grants reported by Acquires
	released := map[string][]int64{} // call times of the Releases that freed each token
	for i, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		if ret, ok := returnOf[in.Token]; ok && in.Kind == Attempt && out.Result == Unknown {
			// Before the GiveUp, not beside it.
			ops[i].Return = max(op.Return, min(ret-1, lastFree[in.Token]))
			_, mayFree := lastFree[in.Token]
			switch {
			case freed[in.Token] && grantable[in.Token] == 1 && !subscribed[in.Token]:
				in.Granted = true
				ops[i].Input = in
			case !mayFree && givenUp[in.Token]:
				in.Void = true
				ops[i].Input = in
			}
		}
		switch {
		case in.Kind == Attempt && out.Result == OK:
			granted[grant{in.Token, out.Fence}] = true
		case in.Kind == Release && out.Result == OK:
			released[in.Token] = append(released[in.Token], op.Call)
		}
	}
	// Spans during which a token may have held a key unseen.
	type span struct {
		token    string
		from, to int64
	}
	unseen := map[string][]span{}
	for _, c := range calls {
		for tok, sub := range c.tokens {
			in := Input{Key: c.key, Token: tok}
			if sub >= 0 {
				unseen[c.key] = append(unseen[c.key], span{tok, sub, c.ret})
				in.Kind = HandedOff
				if tok == c.kept && !granted[grant{tok, c.fence}] {
					ops = append(ops, porcupine.Operation{ClientId: c.client, Input: in, Call: sub, Output: Output{Fence: c.fence}, Return: c.ret})
				}
				if slices.ContainsFunc(released[tok], func(at int64) bool { return at < c.ret }) {
					maybe := porcupine.Operation{ClientId: c.client, Input: in, Call: sub, Output: Output{}, Return: c.ret}
					if tok != c.kept && grantable[tok] == 0 && freed[tok] {
						// Only this grant can explain the Release that
						// found the key held, which it precedes.
						maybe.Input = Input{Kind: HandedOff, Key: c.key, Token: tok, Granted: true}
						maybe.Return = max(sub, min(c.ret, lastFree[tok]))
					}
					ops = append(ops, maybe)
				}
			}
			if tok != c.kept {
				in.Kind = GiveUp
				ops = append(ops, porcupine.Operation{ClientId: c.client, Input: in, Call: c.ret, Output: Output{}, Return: c.ret})
			}
		}
	}
	if quorum {
		for _, op := range ops {
			in, out := op.Input.(Input), op.Output.(Output)
			if in.Kind == Attempt && out.Result != OK {
				unseen[in.Key] = append(unseen[in.Key], span{in.Token, op.Call, op.Return})
			}
		}
	}
	for i, a := range ops {
		in, out := a.Input.(Input), a.Output.(Output)
		if in.Kind != Attempt || out.Result != Busy {
			continue
		}
		for _, s := range unseen[in.Key] {
			if s.token != in.Token && s.from <= a.Return && a.Call <= s.to {
				in.Excused = true
				ops[i].Input = in
				break
			}
		}
	}
	return ops
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
//     node. Acquire, AcquireQueued and AcquireFloor are recorded alike, as
//     attempts.
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
