package redlock

import (
	"context"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// lateGrant is an acquire whose round went on after Acquire returned.
type lateGrant struct {
	done    chan struct{} // closed once every node answered
	timeout time.Duration // the round's node timeout, which bounds its calls
}

// lateGrants records that the acquire of token returned before every node
// answered; all.done closes when they have. Release waits for it: a
// release that overtook a late grant on its node would leave that node
// locked until the TTL.
func (l *locker) lateGrants(token string, all *lateGrant) {
	l.pending.Store(token, all)
	select {
	case <-all.done: // answered meanwhile, maybe before the Store: forget it
		l.pending.CompareAndDelete(token, all)
	default: // the last answer forgets it
	}
}

// Release releases key on every node in parallel, also on nodes that may
// not hold it, so no node stays held that could be freed: first it waits
// for the late answers of the acquire (see Acquire), even if ctx has
// ended, for the acquire's node timeout at most: a late grant must never
// leave a node locked after Release returned. It succeeds once a majority
// of nodes is known to be free of the token, and returns when the other
// nodes answered too, or after as long again as the majority took (at
// least 10ms): an acquire right after Release then finds every
// answering node free, while a node that does not answer delays Release
// little. Releases still running then finish on their own, and their locks
// otherwise expire with their TTL. It returns an error wrapping ErrNotHeld when too
// many nodes did not hold the lock for a majority to have held it (in
// particular when none did).
func (l *locker) Release(ctx context.Context, key, token string) error {
	if err := checkToken(token); err != nil {
		return err
	}
	if v, ok := l.pending.Load(token); ok {
		// The acquire's calls end within their node timeout (unless a
		// node ignores its context), so this wait is bounded by it.
		g := v.(*lateGrant)
		t := time.NewTimer(g.timeout)
		select {
		case <-g.done:
		case <-t.C:
		case <-l.stop.Done():
		}
		t.Stop()
	}
	errs := make([]error, len(l.nodes))
	ok, notHeld := 0, 0
	start := time.Now()
	// Once a majority released, the result is known: the other nodes'
	// releases finish on their own, even if ctx ends meanwhile.
	rest := l.ask(context.WithoutCancel(ctx), l.all, l.cfg.timeoutFor(l.cfg.lockTTL), func(ctx context.Context, i int) (driver.Result, error) {
		return driver.Result{}, l.nodes[i].d.Release(ctx, key, token)
	}, func(i int, _ driver.Result, err error) bool {
		errs[i] = err
		switch {
		case err == nil:
			ok++
		case isNotHeld(err):
			notHeld++
		}
		return ok >= l.quorum
	}, nil)
	rest(releaseWait(start))
	switch {
	case notHeld > len(l.nodes)-l.quorum:
		return l.quorumError("release", key, ok, errs, nil)
	case ok+notHeld < l.quorum:
		return l.quorumError("release", key, ok+notHeld, errs, isNotHeld)
	}
	return nil
}
