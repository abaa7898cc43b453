package redlock

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// Acquire asks every node in parallel. The lock is granted when a majority
// granted it within the validity window; it returns then, without waiting
// for the other nodes, whose answers come in the background (a late grant
// holds a minority node for this token, which Release frees: it reaches
// each node after that node's acquire). With fencing, every node is asked
// for the same fence (see propose); if fewer than a majority granted the
// largest fence among them, it is written back to a majority before it is
// returned. Without fencing (or when req.NoFence says the caller ignores
// fences), the nodes are told to skip fences.
//
// The attempt fails as soon as a majority can no longer grant it, when the
// node timeout passes, or when ctx ends. It is then undone (see abandon):
// each node that granted it, or whose answer is unknown, is released once
// that node's acquire answered or gave up, never before, so the undo
// cannot overtake the acquire it undoes. The node calls do not end with
// ctx: an acquire cut short on the client may still reach its node, after
// an undo sent meanwhile on another connection. Each listens for its answer
// for the validity window (its client's read timeout may cut that short),
// so that a slow answer is known rather than unknown.
func (l *locker) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	return l.acquire(ctx, req, 0)
}

// acquire is Acquire with the caller's fence floor, if not zero (see
// AcquireFloor).
func (l *locker) acquire(ctx context.Context, req driver.Request, floor uint64) (driver.Result, error) {
	if err := checkToken(req.Token); err != nil {
		return driver.Result{}, err
	}
	window, timeout, err := l.window(req.TTL)
	if err != nil {
		return driver.Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return driver.Result{}, l.notSent(req.Key, err)
	}
	start := time.Now()
	// A caller that ignores fences (dlock.Options.DisableFencing) gets
	// none, as if fencing were off: one round, no write-back.
	fencing := l.cfg.fencing && !req.NoFence
	if fencing {
		floor = l.propose(floor, start, timeout)
	} else {
		req.NoFence = true
	}
	calls, queued, answers := l.sendAcquires(ctx, req, fencing, floor, window, timeout)
	r := l.collectAcquires(ctx, answers, fencing, start, timeout)
	if len(r.got) >= l.quorum {
		var fence uint64
		fence, err = l.fence(ctx, req, r.got, r.res, start, window, timeout)
		if err == nil {
			return driver.Result{Acquired: true, Fence: fence}, nil
		}
	}
	for i := range r.errs {
		if !r.answered[i] {
			r.errs[i] = noAnswer(timeout)
			if ctx.Err() != nil {
				r.errs[i] = fmt.Errorf("no answer before the call ended: %w", ctx.Err())
			}
		}
	}
	l.abandon(ctx, req, calls, queued, start, timeout)
	switch {
	case err != nil:
		return driver.Result{}, err
	case len(r.got)+r.busy >= l.quorum:
		// A majority answered, and not all for us: the key is busy.
		return driver.Result{HolderTTL: l.holderHint(r.res, r.errs, time.Since(start))}, nil
	}
	for i := range r.errs {
		if r.errs[i] == nil && !r.res[i].Acquired {
			r.errs[i] = errBusy
		}
	}
	qe := l.quorumError("acquire", req.Key, len(r.got), r.errs, nil)
	qe.undone = true // by abandon, above
	return driver.Result{}, qe
}

// notSent is the error of an Acquire whose ctx ended (with err) before it
// sent anything: a request sent now would outlive the call.
func (l *locker) notSent(key string, err error) error {
	errs := make([]error, len(l.nodes))
	for i := range errs {
		errs[i] = fmt.Errorf("not sent: %w", err)
	}
	qe := l.quorumError("acquire", key, 0, errs, nil)
	qe.undone = true // nothing to undo
	return qe
}

// sendAcquires queues req's acquire on every node (see queue), each call
// bounded by window and waiting at most half of timeout for a late
// release of the key on its node (see lateReleases), and returns the
// calls' answers: calls[i] is node i's, written by its call and read by
// the calls queued after it on that node (the undo); queued[i] is node
// i's place in the token's queue; answers receives each answer as it
// comes.
func (l *locker) sendAcquires(ctx context.Context, req driver.Request, fencing bool, floor uint64, window, timeout time.Duration) (calls []answer, queued []nodeCall, answers chan answer) {
	n := len(l.nodes)
	calls = make([]answer, n)
	queued = make([]nodeCall, n)
	// One deadline serves every node's call, also one that waits for the
	// undo of an earlier attempt with the token: the window counts from
	// start.
	callCtx, cancel := l.detach(ctx, window)
	returned := lastOf(n, cancel)
	answers = make(chan answer, n)
	call := func(i int, _ bool) answer {
		var r driver.Result
		err := errUnsureRelease
		// A release queued before it may have given up meanwhile.
		if !l.unsureOn(req.Token, i) {
			late := !l.lateReturned(&queued[i])
			r, err = l.nodes[i].acquire(callCtx, req, fencing, floor)
			if late && err == nil && !r.Acquired {
				r, err = driver.Result{}, errLateUndo
			}
		}
		calls[i] = answer{i: i, res: r, err: err}
		returned()
		return calls[i]
	}
	for i := range n {
		// Half the node timeout for a late release of the key there
		// (see lateReleases), half for the node's answer.
		queued[i].acquire, queued[i].key, queued[i].lateWait = true, req.Key, max(timeout/2, time.Millisecond)
	}
	l.queueRound(req.Token, queued, func(i int) bool {
		if err := l.acquireBarredLocked(req.Token, i); err != nil {
			calls[i] = answer{i: i, err: err}
			return false
		}
		return true
	}, answers, call)
	for i := range n {
		if queued[i].q == nil {
			// Not asked (see tokenCalls), nor queued: nothing to undo.
			answers <- calls[i]
			returned()
		}
	}
	return calls, queued, answers
}

// acquireRound is the answers an Acquire took, by node.
type acquireRound struct {
	res      []driver.Result
	errs     []error
	answered []bool
	got      []int // the nodes that granted, in the order they answered
	busy     int   // how many answered that the key is busy
}

// collectAcquires takes the nodes' answers until a majority granted (with
// fencing, a fence a majority agrees on, or any; see fence), the attempt
// is decided busy or failed (see acquireDecided) and the others had as
// long again, timeout passes, or ctx ends.
func (l *locker) collectAcquires(ctx context.Context, answers <-chan answer, fencing bool, start time.Time, timeout time.Duration) *acquireRound {
	n := len(l.nodes)
	r := &acquireRound{res: make([]driver.Result, n), errs: make([]error, n), answered: make([]bool, n)}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var grace <-chan time.Time
	for received := 0; received < n; {
		select {
		case a := <-answers:
			received++
			r.answered[a.i], r.res[a.i], r.errs[a.i] = true, a.res, a.err
			switch {
			case a.err != nil:
			case a.res.Acquired:
				r.got = append(r.got, a.i)
			default:
				r.busy++
			}
			if len(r.got) >= l.quorum && (!fencing || agreed(r.got, r.res, l.quorum) != 0) {
				return r // granted
			}
			if l.acquireDecided(r, received) && grace == nil {
				// Decided: a majority can no longer grant, and the
				// answers show whether the key is busy or the attempt
				// failed. The other answers only refine the holder's
				// expiry hint or the error; they get as long again as
				// the decision took.
				g := time.NewTimer(max(time.Since(start), time.Millisecond))
				defer g.Stop()
				grace = g.C
			}
		case <-grace:
			return r
		case <-timer.C:
			return r
		case <-ctx.Done():
			return r
		}
	}
	return r
}

// acquireDecided reports whether an attempt with r, received answers,
// cannot be granted and is known busy or failed: a majority can no longer
// grant, and either a majority answered, granting or busy (the key is
// busy), or too few nodes are left to make one (it failed). Until then
// the answers still to come decide between busy and failed: a node not
// asked because an earlier attempt of the token has not returned there
// (see tokenCalls) and one busy node leave it to the third node.
func (l *locker) acquireDecided(r *acquireRound, received int) bool {
	n := len(l.nodes)
	if received-len(r.got) <= n-l.quorum {
		return false
	}
	answeredFor := len(r.got) + r.busy
	return answeredFor >= l.quorum || answeredFor+n-received < l.quorum
}

var errBusy = errors.New("held by another token")

// agreed returns the largest fence granted by a majority of the nodes in
// got, or 0 if there is none. Such a fence exceeds every fence granted
// before (each of those is on a majority, which shares a node with this
// one), so it needs no raising: the common case, where every node grants
// the proposed floor, and a repeated request of a holder whose grants
// were the same fence.
func agreed(got []int, res []driver.Result, quorum int) uint64 {
	var best uint64
	for _, i := range got {
		f, n := res[i].Fence, 0
		for _, j := range got {
			if res[j].Fence == f {
				n++
			}
		}
		if n >= quorum && f > best {
			best = f
		}
	}
	return best
}

// propose returns the fence floor of an attempt started at now with
// per-node timeout lead: the caller's floor if it set one, else this
// client's clock in microseconds plus lead, kept increasing across its
// attempts. A node grants the largest of the floor, its own clock and one
// more than its last fence (the floor capped at its clock plus the TTL;
// see redisdriver's Fences): the request reaches every node within lead,
// so a node whose clock agrees with this client's finds its clock below
// the floor, and every node grants the same fence, unless one has already
// granted a larger one (another client's clock runs ahead). The
// write-back round of [locker.fence] is then rarely needed.
func (l *locker) propose(floor uint64, now time.Time, lead time.Duration) uint64 {
	if floor != 0 {
		return floor
	}
	for {
		last := l.floor.Load()
		f := max(uint64(now.Add(lead).UnixMicro()), last+1)
		if l.floor.CompareAndSwap(last, f) {
			return f
		}
	}
}

// fence returns the fence of a lease granted by the nodes in got: the
// largest of their fences, once a majority of nodes is known to grant only
// larger ones later. Nodes that granted that fence themselves do; the
// others are raised to it.
func (l *locker) fence(ctx context.Context, req driver.Request, got []int, res []driver.Result, start time.Time, window, timeout time.Duration) (uint64, error) {
	if took := time.Since(start); took >= window {
		return 0, validityError("acquire", req.Key, took, window)
	}
	if req.NoFence {
		return 0, nil
	}
	if f := agreed(got, res, l.quorum); f != 0 {
		return f, nil
	}
	var f uint64
	for _, i := range got {
		f = max(f, res[i].Fence)
	}
	// Fewer than a quorum granted f (agreed found none): raise the others.
	have := 0
	var raise []int
	for _, i := range got {
		if res[i].Fence == f {
			have++
		} else {
			raise = append(raise, i)
		}
	}
	errs := make([]error, len(l.nodes))
	l.round(ctx, raise, min(timeout, window-time.Since(start)), func(ctx context.Context, i int) {
		errs[i] = l.nodes[i].raiser.RaiseFence(ctx, req.Key, req.Token, f)
	})
	for _, i := range raise {
		if errs[i] == nil {
			have++
		}
	}
	if have < l.quorum {
		return 0, l.quorumError("raise the fence of", req.Key, have, errs, nil)
	}
	if took := time.Since(start); took >= window {
		return 0, validityError("acquire", req.Key, took, window)
	}
	return f, nil
}

// abandon undoes the failed acquire of req, started at start, whose node
// answers calls holds and whose node calls are acquires: on each node
// asked (acquires[i] was queued; see tokenCalls), once the node answered
// its acquire or the call gave up, it releases the token unless the answer
// shows that the node does not hold it (busy, or surely not applied). The
// undo of every node is then certain to be sent, after its acquire, so the
// attempt is undone (see [QuorumError.OutcomeUnknown]).
//
// abandon waits until every node is known not to hold the token, so that
// when Acquire answers busy no node is held by it: another client's
// attempt right after would otherwise find a node held by this undone
// token alone, and with one other node held or failing answer busy while
// nobody holds the key. It waits until the node timeout from start, and at
// least a quarter of it (the attempt may have spent the node timeout
// waiting for a node that does not answer): an undo waits for its node's
// acquire, which listens for up to the validity window, and a hung node
// must not hold the attempt that long. The rest goes on in the background,
// where this driver's next acquires of the key wait for it (see
// lateReleases). Release errors are dropped; those locks expire with the
// TTL.
func (l *locker) abandon(ctx context.Context, req driver.Request, calls []answer, acquires []nodeCall, start time.Time, timeout time.Duration) {
	n := len(l.nodes)
	out := make(chan answer, n)
	queued := make([]nodeCall, n)
	undo := func(i int, _ bool) answer {
		if surelyNot(calls[i]) {
			return answer{i: i}
		}
		rctx, cancel := l.detach(ctx, timeout)
		defer cancel()
		err := l.nodes[i].d.Release(rctx, req.Key, req.Token)
		if releaseGaveUp(err) {
			l.markUnsure(req.Token, i, req.TTL)
		}
		if isNotHeld(err) {
			err = nil
		}
		return answer{i: i, err: err}
	}
	l.queueRound(req.Token, queued, func(i int) bool { return acquires[i].q != nil }, out, undo)
	defer func() {
		l.mu.Lock()
		l.late.record(req.Key, queued)
		l.mu.Unlock()
	}()
	pending := 0
	for i := range n {
		if acquires[i].q != nil {
			pending++
		}
	}
	timer := time.NewTimer(max(time.Until(start.Add(timeout)), timeout/4, time.Millisecond))
	defer timer.Stop()
	for ; pending > 0; pending-- {
		select {
		case <-out:
		case <-timer.C:
			return
		}
	}
}

// holderHint returns when a majority of nodes may be free, judging by a
// busy attempt's answers: a node that granted the attempt is free now, a
// busy node when its holder's TTL ends, a failed node never. The
// majority-th smallest of those times is when the next attempt may succeed;
// zero if unknown.
func (l *locker) holderHint(res []driver.Result, errs []error, took time.Duration) time.Duration {
	const never = time.Duration(math.MaxInt64)
	free := make([]time.Duration, len(l.nodes))
	for i := range free {
		switch {
		case errs[i] != nil:
			free[i] = never
		case res[i].Acquired:
			free[i] = 0
		case res[i].HolderTTL > 0:
			free[i] = res[i].HolderTTL
		default:
			free[i] = never
		}
	}
	slices.Sort(free)
	h := free[l.quorum-1]
	if h == never {
		return 0
	}
	// The hints were taken during the round; count from its start, so a
	// waiter wakes no later than the holder's expiry.
	return max(h-took, time.Millisecond)
}
