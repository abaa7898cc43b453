package redlock

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/dlock-go/dlock/driver"
)

func isNotHeld(err error) bool { return errors.Is(err, driver.ErrNotHeld) }

// Refresh refreshes every node in parallel. It succeeds when a majority
// confirmed within the validity window, counted from the call. It returns
// an error wrapping ErrNotHeld when too many nodes no longer hold the lock
// for a majority to hold it; other failures are transient.
func (l *locker) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	if err := checkToken(token); err != nil {
		return err
	}
	window, timeout, err := l.window(ttl)
	if err != nil {
		return err
	}
	start := time.Now()
	errs := make([]error, len(l.nodes))
	took := make([]time.Duration, len(l.nodes))
	l.round(ctx, l.all, timeout, func(ctx context.Context, i int) {
		errs[i] = l.nodes[i].d.Refresh(ctx, key, token, ttl)
		took[i] = time.Since(start)
	})
	return l.refreshResult(key, errs, took, window)
}

// refreshResult judges one key's refresh from the nodes' answers and the
// time each took. The refresh holds if a majority confirmed within the
// window: then that majority keeps the lock for at least the TTL from the
// call, whatever the other nodes did.
func (l *locker) refreshResult(key string, errs []error, took []time.Duration, window time.Duration) error {
	ok, notHeld := 0, 0
	var confirmed []time.Duration
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
			confirmed = append(confirmed, took[i])
		case isNotHeld(err):
			notHeld++
		}
	}
	if ok >= l.quorum {
		slices.Sort(confirmed)
		if t := confirmed[l.quorum-1]; t >= window {
			return validityError("refresh", key, t, window)
		}
		return nil
	}
	if notHeld > len(l.nodes)-l.quorum {
		// No majority holds it any more: the lease is lost.
		return l.quorumError("refresh", key, ok, errs, nil)
	}
	return l.quorumError("refresh", key, ok, errs, isNotHeld)
}

// RefreshBatch refreshes every request on every node: one batched call per
// node, in parallel, for nodes that can batch. Each request is judged as
// Refresh judges it.
func (l *locker) RefreshBatch(ctx context.Context, reqs []driver.RefreshRequest) []error {
	out := make([]error, len(reqs))
	if len(reqs) == 0 {
		return out
	}
	// Only the valid requests go to the nodes: an invalid one is
	// reported as such, and must not change the lock it names.
	var valid []int // index in reqs of each request sent
	var send []driver.RefreshRequest
	var windows []time.Duration
	var timeout time.Duration
	for j, r := range reqs {
		w, t, err := l.window(r.TTL)
		if err == nil {
			err = checkToken(r.Token)
		}
		if err != nil {
			out[j] = err
			continue
		}
		valid, send, windows = append(valid, j), append(send, r), append(windows, w)
		if timeout == 0 || t < timeout {
			timeout = t
		}
	}
	if len(send) == 0 {
		return out // every request was invalid
	}
	start := time.Now()
	per := make([][]error, len(l.nodes))
	took := make([]time.Duration, len(l.nodes))
	l.round(ctx, l.all, timeout, func(ctx context.Context, i int) {
		per[i] = driver.RefreshBatch(ctx, l.nodes[i].d, send)
		took[i] = time.Since(start)
	})
	col := make([]error, len(l.nodes))
	for k, j := range valid {
		for i := range l.nodes {
			col[i] = per[i][k]
		}
		out[j] = l.refreshResult(reqs[j].Key, col, took, windows[k])
	}
	return out
}
