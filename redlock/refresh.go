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
	n := len(l.nodes)
	errs := make([]error, n)
	took := make([]time.Duration, n)
	ok, received := 0, 0
	l.decide(ctx, timeout, func(i int, ctx context.Context) answer {
		return answer{i: i, err: l.nodes[i].d.Refresh(ctx, key, token, ttl)}
	}, func(a answer) bool {
		errs[a.i], took[a.i] = a.err, time.Since(start)
		if received++; a.err == nil {
			ok++
		}
		// Decided once a majority confirmed, or too few are left to.
		return ok >= l.quorum || ok+n-received < l.quorum
	}, func(i int) { errs[i] = noAnswer(timeout) })
	return l.refreshResult(key, errs, took, window)
}

// decide calls call on every node in parallel, each with a context
// bounded by timeout and by ctx's deadline but not ended by its
// cancellation, and hands each answer to take as it arrives. It returns
// once take reports the outcome decided, when every node answered, after
// timeout, or when ctx ends; the calls still running then finish in the
// background (Close waits for them), and missing is called for each node
// that had not answered. The slower nodes are refreshed too, so that the
// next refresh finds them held; never after ctx's deadline (a lease's),
// past which a refresh would hold a lost lease's key.
func (l *locker) decide(ctx context.Context, timeout time.Duration, call func(i int, ctx context.Context) answer, take func(answer) bool, missing func(i int)) {
	n := len(l.nodes)
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	callCtx, cancel := l.detach(ctx, timeout)
	returned := lastOf(n, cancel)
	out := make(chan answer, n)
	for i := range n {
		l.start("", i, nil, out, func(i int, _ bool) answer {
			defer returned()
			return call(i, callCtx)
		})
	}
	answered := make([]bool, n)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
collect:
	for received := 0; received < n; received++ {
		select {
		case a := <-out:
			answered[a.i] = true
			if take(a) {
				break collect
			}
		case <-timer.C:
			break collect
		case <-ctx.Done():
			break collect
		}
	}
	for i, ok := range answered {
		if !ok {
			missing(i)
		}
	}
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
	n := len(l.nodes)
	per := make([][]error, n)
	took := make([]time.Duration, n)
	confirmed := make([]int, len(send)) // per request sent: the nodes that confirmed it
	received := 0
	l.decide(ctx, timeout, func(i int, ctx context.Context) answer {
		return answer{i: i, errs: driver.RefreshBatch(ctx, l.nodes[i].d, send)}
	}, func(a answer) bool {
		per[a.i], took[a.i] = a.errs, time.Since(start)
		received++
		decided := true
		for k, err := range a.errs {
			if err == nil {
				confirmed[k]++
			}
			decided = decided && (confirmed[k] >= l.quorum || confirmed[k]+n-received < l.quorum)
		}
		return decided
	}, func(i int) {
		per[i] = make([]error, len(send))
		for k := range per[i] {
			per[i][k] = noAnswer(timeout)
		}
	})
	col := make([]error, n)
	for k, j := range valid {
		for i := range l.nodes {
			col[i] = per[i][k]
		}
		out[j] = l.refreshResult(reqs[j].Key, col, took, windows[k])
	}
	return out
}
