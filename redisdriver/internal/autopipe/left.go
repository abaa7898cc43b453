package autopipe

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
)

// leftCalls is the set of calls sent in batches whose callers left
// (their contexts ended) before the replies came, by key. It is safe for
// concurrent use.
type leftCalls struct {
	n     atomic.Int64 // how many: calls skip the lock while there are none
	mu    sync.Mutex
	byKey map[string][]*call
}

func (l *leftCalls) add(k string, c *call) {
	l.mu.Lock()
	l.byKey[k] = append(l.byKey[k], c)
	l.mu.Unlock()
	l.n.Add(1)
}

// addLast adds c as the last call on k, and returns the calls on k
// before it.
func (l *leftCalls) addLast(k string, c *call) []*call {
	l.mu.Lock()
	before := slices.Clone(l.byKey[k])
	l.byKey[k] = append(l.byKey[k], c)
	l.mu.Unlock()
	l.n.Add(1)
	return before
}

func (l *leftCalls) remove(k string, c *call) {
	l.mu.Lock()
	if calls := slices.DeleteFunc(l.byKey[k], func(x *call) bool { return x == c }); len(calls) > 0 {
		l.byKey[k] = calls
	} else {
		delete(l.byKey, k)
	}
	l.mu.Unlock()
	l.n.Add(-1)
}

// wait waits until the calls on key that were left in flight are
// answered, or ctx ends.
func (l *leftCalls) wait(ctx context.Context, key string) error {
	if l.n.Load() == 0 {
		return nil
	}
	l.mu.Lock()
	calls := slices.Clone(l.byKey[key])
	l.mu.Unlock()
	for _, c := range calls {
		select {
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
