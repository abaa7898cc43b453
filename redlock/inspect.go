package redlock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// Inspect implements [driver.Inspector] when a majority of nodes can
// inspect (see inspectKey), and otherwise returns at once an error
// wrapping errors.ErrUnsupported.
func (l *locker) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	if err := l.lacks("inspect", l.inspectors); err != nil {
		return driver.Holder{}, false, err
	}
	return l.inspectKey(ctx, key)
}

// inspectKey reports the holder that a majority of nodes agree on: the
// same owner on a majority. Its fence is the largest that a majority of
// those nodes report, its TTL the time until fewer than a majority hold
// it, and Since when a majority first held it. ok is false when no owner
// has a majority. It returns once the answers decide it (an owner on a
// majority, or a majority answered and no owner can reach one), after
// waiting as long again as that took (at least a millisecond) for the
// other nodes: a dead or slow node does not hold it for its node timeout.
func (l *locker) inspectKey(ctx context.Context, key string) (driver.Holder, bool, error) {
	n := len(l.nodes)
	type inspected struct {
		h    driver.Holder
		held bool
	}
	out := make([]inspected, n) // each written by its node's call, read once it answered
	holders := make([]driver.Holder, n)
	errs := make([]error, n)
	var idx []int
	for i, nd := range l.nodes {
		if nd.inspect == nil {
			errs[i] = fmt.Errorf("%T cannot inspect: %w", nd.d, errors.ErrUnsupported)
			continue
		}
		idx = append(idx, i)
	}
	answered, waiting := 0, len(idx)
	byOwner := make(map[string][]int)
	start := time.Now()
	rest := l.ask(ctx, idx, l.cfg.timeoutFor(l.cfg.lockTTL), func(ctx context.Context, i int) (driver.Result, error) {
		var err error
		out[i].h, out[i].held, err = l.nodes[i].inspect.Inspect(ctx, key)
		return driver.Result{}, err
	}, func(i int, _ driver.Result, err error) bool {
		waiting--
		if errs[i] = err; err != nil {
			return false
		}
		answered++
		if out[i].held {
			holders[i] = out[i].h
			byOwner[holders[i].Owner] = append(byOwner[holders[i].Owner], i)
		}
		most := 0
		for _, nodes := range byOwner {
			most = max(most, len(nodes))
		}
		return answered >= l.quorum && (most >= l.quorum || most+waiting < l.quorum)
	}, nil)
	rest(max(time.Since(start), time.Millisecond))
	if answered < l.quorum {
		return driver.Holder{}, false, l.quorumError("inspect", key, answered, errs, nil)
	}
	for owner, idx := range byOwner {
		if len(idx) < l.quorum {
			continue
		}
		// Each figure is the one a majority of the holder's nodes agree
		// on: the quorum-th largest fence and TTL, and the quorum-th
		// earliest grant. A node that granted late (after the majority
		// decided, see Acquire) may hold a larger fence than the lease's.
		var fences []uint64
		var ttls []time.Duration
		var since []time.Time
		for _, i := range idx {
			fences = append(fences, holders[i].Fence)
			ttls = append(ttls, holders[i].TTL)
			if !holders[i].Since.IsZero() {
				since = append(since, holders[i].Since)
			}
		}
		slices.Sort(fences)
		slices.Sort(ttls)
		slices.SortFunc(since, time.Time.Compare)
		h := driver.Holder{Owner: owner, Fence: fences[len(fences)-l.quorum], TTL: ttls[len(ttls)-l.quorum]}
		if len(since) >= l.quorum {
			h.Since = since[l.quorum-1]
		}
		return h, true, nil
	}
	return driver.Holder{}, false, nil
}
