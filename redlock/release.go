package redlock

import (
	"context"
	"time"
)

// Release releases key on every node in parallel, also on nodes that may
// not hold it, so no node stays held that could be freed. On each node the
// release goes out after the acquires of token there have answered or
// given up (see tokenCalls), even if ctx has ended: a late grant must never
// leave a node locked after Release. It succeeds once a majority of nodes
// is known to be free of the token. Once the outcome is decided, it
// returns when the other nodes answered too, or after as long again as
// the decision took (at least 10ms): an acquire right after Release then
// finds every answering node free, while a node that does not answer
// delays Release little. The releases still running then finish in the
// background (Close waits for them), and their locks otherwise expire with
// their TTL. It returns an error wrapping ErrNotHeld when too many nodes
// did not hold the lock for a majority to have held it (in particular when
// none did).
func (l *locker) Release(ctx context.Context, key, token string) error {
	if err := checkToken(token); err != nil {
		return err
	}
	n := len(l.nodes)
	timeout := l.cfg.timeoutFor(l.cfg.lockTTL)
	ctx = context.WithoutCancel(ctx)
	out := make(chan answer, n)
	start := time.Now()
	// The calls that start at once share a deadline; one that waited for
	// its node's acquire gets the node timeout from when it starts.
	shared, cancel := l.bound(ctx, timeout)
	returned := lastOf(n, cancel)
	queued := make([]nodeCall, n)
	for i := range n {
		l.queue(token, i, &queued[i], out, func(i int, waited bool) answer {
			defer returned()
			rctx := shared
			if waited {
				var cancel context.CancelFunc
				rctx, cancel = l.bound(ctx, timeout)
				defer cancel()
			}
			err := l.nodes[i].d.Release(rctx, key, token)
			if releaseGaveUp(err) {
				l.markUnsure(token, i, l.cfg.lockTTL)
			}
			return answer{i: i, err: err}
		})
	}
	errs := make([]error, n)
	answered := make([]bool, n)
	ok, notHeld := 0, 0
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var grace <-chan time.Time
collect:
	for received := 0; received < n; received++ {
		select {
		case a := <-out:
			answered[a.i], errs[a.i] = true, a.err
			switch {
			case a.err == nil:
				ok++
			case isNotHeld(a.err):
				notHeld++
			}
			// Decided once a majority released, or too many did not hold
			// it for a majority to have held it.
			if (ok >= l.quorum || notHeld > n-l.quorum) && grace == nil {
				t := time.NewTimer(releaseWait(start))
				defer t.Stop()
				grace = t.C
			}
		case <-grace:
			break collect
		case <-deadline.C:
			break collect
		}
	}
	for i := range n {
		if !answered[i] {
			errs[i] = noAnswer(timeout)
		}
	}
	switch {
	case ok >= l.quorum:
	case notHeld > n-l.quorum:
		return l.quorumError("release", key, ok, errs, nil)
	case ok+notHeld < l.quorum:
		return l.quorumError("release", key, ok+notHeld, errs, isNotHeld)
	}
	return nil
}
