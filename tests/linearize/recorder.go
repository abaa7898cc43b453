package linearize

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/dlock-go/dlock/driver"
)

// History collects operations from many clients. It is safe for concurrent
// use.
type History struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
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

// Operations returns the recorded operations, with busy attempts that
// overlap another token's failed attempt excused if quorum is set (see
// [Input.Excused]).
func (h *History) Operations(quorum bool) []porcupine.Operation {
	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	h.mu.Unlock()
	if !quorum {
		return ops
	}
	for i, a := range ops {
		ai, ao := a.Input.(Input), a.Output.(Output)
		if ai.Kind != Attempt || ao.Result != Busy {
			continue
		}
		for _, b := range ops {
			bi, bo := b.Input.(Input), b.Output.(Output)
			if bi.Kind == Attempt && bo.Result != OK && bi.Key == ai.Key && bi.Token != ai.Token &&
				b.Call <= a.Return && a.Call <= b.Return {
				ai.Excused = true
				ops[i].Input = ai
				break
			}
		}
	}
	return ops
}

// opTokens collects the tokens of one dlock call's attempts: the client
// puts one in the call's context, and the recording driver fills it.
type opTokens struct {
	mu     sync.Mutex
	tokens map[string]bool
}

type opKey struct{}

// WithTokens returns a context whose driver attempts, seen by a [Recorder],
// note their tokens in the returned set.
func WithTokens(ctx context.Context) (context.Context, *opTokens) {
	t := &opTokens{tokens: map[string]bool{}}
	return context.WithValue(ctx, opKey{}, t), t
}

// Tokens returns the tokens noted so far.
func (t *opTokens) Tokens() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var s []string
	for tok := range t.tokens {
		s = append(s, tok)
	}
	return s
}

// Recorder is a driver that records every Acquire, Release and Refresh of
// the driver it wraps in a History, and forwards release notifications and
// batched refreshes.
type Recorder struct {
	driver.Locker
	H      *History
	Client int // ClientId of the operations
}

var (
	_ driver.Notifier       = (*Recorder)(nil)
	_ driver.BatchRefresher = (*Recorder)(nil)
)

// classify maps a driver error to a Result.
func classify(err error, notHeld Result) Result {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, driver.ErrNotHeld):
		return notHeld
	case errors.Is(err, driver.ErrUnavailable):
		return NotApplied
	}
	return Unknown
}

func (r *Recorder) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	if t, ok := ctx.Value(opKey{}).(*opTokens); ok {
		t.mu.Lock()
		t.tokens[req.Token] = true
		t.mu.Unlock()
	}
	call := r.H.Now()
	res, err := r.Locker.Acquire(ctx, req)
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
	call := r.H.Now()
	err := r.Locker.Release(ctx, key, token)
	r.H.Add(r.Client, Input{Kind: Release, Key: key, Token: token}, call, Output{Result: classify(err, NotHeld)}, r.H.Now())
	return err
}

func (r *Recorder) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	call := r.H.Now()
	err := r.Locker.Refresh(ctx, key, token, ttl)
	r.H.Add(r.Client, Input{Kind: Refresh, Key: key, Token: token}, call, Output{Result: classify(err, NotHeld)}, r.H.Now())
	return err
}

func (r *Recorder) RefreshBatch(ctx context.Context, reqs []driver.RefreshRequest) []error {
	call := r.H.Now()
	errs := driver.RefreshBatch(ctx, r.Locker, reqs)
	ret := r.H.Now()
	for i, q := range reqs {
		r.H.Add(r.Client, Input{Kind: Refresh, Key: q.Key, Token: q.Token}, call, Output{Result: classify(errs[i], NotHeld)}, ret)
	}
	return errs
}

func (r *Recorder) Subscribe(ctx context.Context, key, token string) (<-chan struct{}, func(), error) {
	n, ok := r.Locker.(driver.Notifier)
	if !ok {
		return nil, nil, errors.ErrUnsupported
	}
	return n.Subscribe(ctx, key, token)
}
