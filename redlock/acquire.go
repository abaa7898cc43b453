package redlock

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// Acquire asks every node in parallel. The lock is granted when a majority
// granted it within the validity window; it returns then, without waiting
// for the other nodes. With fencing, every node is asked
// for the same fence (see propose); if fewer than a majority granted the
// largest fence among them, it is written back to a majority before it is
// returned. Without fencing (or when req.NoFence says the caller ignores
// fences), the nodes are told to skip fences. When the
// attempt fails, every node that granted it, or whose answer is unknown, is
// released before Acquire returns.
func (l *locker) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	if err := checkToken(req.Token); err != nil {
		return driver.Result{}, err
	}
	window, timeout, err := l.window(req.TTL)
	if err != nil {
		return driver.Result{}, err
	}
	start := time.Now()
	// Nodes do not queue waiters: their queues could pick different
	// waiters, none of which would then be woken on a majority.
	req.Wait = 0
	// A caller that ignores fences (dlock.Options.DisableFencing) gets
	// none, as if fencing were off: one round, no write-back.
	fencing := l.cfg.fencing && !req.NoFence
	if fencing {
		req.FenceFloor = l.propose(req.FenceFloor, start, timeout)
	} else {
		req.NoFence = true
	}
	n := len(l.nodes)
	res := make([]driver.Result, n)
	errs := make([]error, n)
	var got []int
	busy := 0
	// A majority of grants decides the round: the other nodes' answers
	// cannot change it, so they are not awaited (a late grant holds a
	// minority node for this token, which Release frees). A failure waits
	// for every answer, to release what the late ones granted.
	all := &lateGrant{done: make(chan struct{}), timeout: timeout} // done once every node answered
	rest := l.ask(ctx, l.all, timeout, func(ctx context.Context, i int) (driver.Result, error) {
		return l.nodes[i].d.Acquire(ctx, req)
	}, func(i int, r driver.Result, err error) bool {
		res[i], errs[i] = r, err
		switch {
		case err != nil:
		case r.Acquired:
			got = append(got, i)
		default:
			busy++
		}
		return len(got) >= l.quorum && (!fencing || agreed(got, res, l.quorum) != 0)
	}, func() {
		close(all.done)
		l.pending.CompareAndDelete(req.Token, all)
	})
	if len(got) >= l.quorum {
		var fence uint64
		fence, err = l.fence(ctx, req, got, res, start, window, timeout)
		if err == nil {
			l.lateGrants(req.Token, all)
			return driver.Result{Acquired: true, Fence: fence}, nil
		}
		rest(0) // every answer, so that late grants are released too
	}
	l.abandon(ctx, req, got, errs, timeout)
	switch {
	case err != nil:
		return driver.Result{}, err
	case len(got)+busy >= l.quorum:
		// A majority answered, and not all for us: the key is busy.
		return driver.Result{HolderTTL: l.holderHint(res, errs, time.Since(start))}, nil
	}
	for i := range n {
		if errs[i] == nil && !res[i].Acquired {
			errs[i] = errBusy
		}
	}
	qe := l.quorumError("acquire", req.Key, len(got), errs, nil)
	qe.undone = true // by abandon, above
	return driver.Result{}, qe
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

var _ driver.FenceFloorer = (*locker)(nil)

// CheckFenceFloors implements [driver.FenceFloorer]: with fencing, the
// caller's floor is proposed to every node, each of which honours it, and
// the lease's fence is one of theirs. Without fencing leases carry fence
// 0, and it returns an error wrapping errors.ErrUnsupported.
func (l *locker) CheckFenceFloors() error {
	if !l.cfg.fencing {
		return fmt.Errorf("redlock: fencing is disabled: %w", errors.ErrUnsupported)
	}
	return nil
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

// abandon releases what a failed acquire may hold: the nodes that granted
// it, and those whose answer is unknown because their request may have
// landed. Nodes that answered busy or unavailable surely do not hold it.
// An unknown node failed to answer once already, so its release gets a
// quarter of the node timeout: a failed acquire should not take twice the
// node timeout. Release errors are dropped; those locks expire with the TTL.
func (l *locker) abandon(ctx context.Context, req driver.Request, got []int, errs []error, timeout time.Duration) {
	ctx = context.WithoutCancel(ctx)
	short := max(timeout/4, time.Millisecond)
	var wg sync.WaitGroup
	for i, n := range l.nodes {
		t := timeout
		switch {
		case slices.Contains(got, i):
		case errs[i] != nil && !errors.Is(errs[i], driver.ErrUnavailable):
			t = short
		default:
			continue
		}
		wg.Add(1)
		l.workers.do(func() {
			defer wg.Done()
			rctx, cancel := l.bound(ctx, t)
			defer cancel()
			n.d.Release(rctx, req.Key, req.Token)
		})
	}
	wg.Wait()
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
