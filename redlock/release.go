package redlock

import (
	"context"
	"time"
)

// Release releases key on every node in parallel, also on nodes that may
// not hold it, so no node stays held that could be freed. On each node the
// release goes out after the acquires of token there have answered or
// given up (see tokenCalls), even if ctx has ended: a late grant must never
// leave a node locked after Release. It succeeds as soon as a majority
// of nodes is known to be free of the token, as redsync's fail-fast mode
// does. A failure waits longer, so that its error names each node's cause:
// it wraps ErrNotHeld when too many nodes did not hold the lock for a
// majority to have held it (in particular when none did), and then waits
// for the others as long again as the answers took (at least minGrace);
// any other failure waits for every node or the node timeout. The
// releases still running when Release returns finish in the background
// (Close waits for them; a lock they do not free expires with its TTL),
// and this driver's next acquires of key wait for them on their nodes
// (see lateReleases).
func (l *locker) Release(ctx context.Context, key, token string) error {
	if err := checkToken(token); err != nil {
		return err
	}
	n := len(l.nodes)
	timeout := l.cfg.timeoutFor(l.cfg.lockTTL)
	queued, out := l.sendReleases(ctx, key, token, timeout)
	errs := make([]error, n)
	answered := make([]bool, n)
	ok, notHeld := 0, 0
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var grace <-chan time.Time
collect:
	for received := 0; received < n; {
		select {
		case a := <-out:
			received++
			answered[a.i], errs[a.i] = true, a.err
			switch {
			case a.err == nil:
				ok++
			case isNotHeld(a.err):
				notHeld++
			}
			if l.releaseVerdict(ok, notHeld) == released && l.releaseDecided(ok, notHeld, n-received) {
				break collect
			}
			if notHeld > n-l.quorum && grace == nil {
				// Not held by a majority: the other nodes' causes go
				// into the error too, if they come within as long again
				// as the decision took. Other failures wait for every
				// node, or the node timeout, to name each node's cause.
				t := time.NewTimer(max(time.Since(start), minGrace))
				defer t.Stop()
				grace = t.C
			}
		case <-grace:
			break collect
		case <-deadline.C:
			break collect
		}
	}
	l.mu.Lock()
	l.late.record(key, queued)
	l.mu.Unlock()
	verdict := l.releaseVerdict(ok, notHeld)
	if verdict == released {
		return nil
	}
	for i := range n {
		if !answered[i] {
			errs[i] = noAnswer(timeout)
		}
	}
	if verdict == releaseNotHeld {
		return l.quorumError("release", key, ok, errs, nil)
	}
	return l.quorumError("release", key, ok+notHeld, errs, isNotHeld)
}

// sendReleases queues the release of key by token on every node (see
// queue), each bounded by timeout, and returns the nodes' places in the
// token's queue and the channel their answers come on.
func (l *locker) sendReleases(ctx context.Context, key, token string, timeout time.Duration) ([]nodeCall, chan answer) {
	n := len(l.nodes)
	out := make(chan answer, n)
	// The calls that start at once share a deadline; one that waited for
	// its node's acquire gets the node timeout from when it starts.
	shared, cancel := l.detach(ctx, timeout)
	returned := lastOf(n, cancel)
	queued := make([]nodeCall, n)
	call := func(i int, waited bool) answer {
		defer returned()
		rctx := shared
		if waited {
			var cancel context.CancelFunc
			rctx, cancel = l.detach(ctx, timeout)
			defer cancel()
		}
		err := l.nodes[i].d.Release(rctx, key, token)
		if releaseGaveUp(err) {
			l.markUnsure(token, i, l.cfg.lockTTL)
		}
		return answer{i: i, err: err}
	}
	l.queueRound(token, queued, nil, out, call)
	return queued, out
}

// The outcomes of a Release.
const (
	released       = iota // a majority is free of the token
	releaseNotHeld        // too many nodes did not hold it for a majority to have held it
	releaseFailed         // neither is known
)

// releaseVerdict judges a Release from its answers: ok nodes released
// the token, notHeld did not hold it, the others failed or did not
// answer.
func (l *locker) releaseVerdict(ok, notHeld int) int {
	switch n := len(l.nodes); {
	case ok >= l.quorum:
		return released
	case notHeld > n-l.quorum:
		return releaseNotHeld
	case ok+notHeld >= l.quorum:
		return released
	}
	return releaseFailed
}

// releaseDecided reports whether no answer of the left nodes still to
// answer can change the verdict of ok and notHeld.
func (l *locker) releaseDecided(ok, notHeld, left int) bool {
	if ok >= l.quorum {
		return true // the common case
	}
	v := l.releaseVerdict(ok, notHeld)
	for a := range left + 1 {
		for b := range left - a + 1 {
			if l.releaseVerdict(ok+a, notHeld+b) != v {
				return false
			}
		}
	}
	return true
}
