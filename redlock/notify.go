package redlock

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"
)

// Subscribe implements [driver.Notifier] when a majority of nodes can
// notify (see subscribe), and otherwise returns at once an error wrapping
// errors.ErrUnsupported.
func (l *locker) Subscribe(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	if err := l.lacks("notify releases", l.notifiers); err != nil {
		return nil, nil, err
	}
	return l.subscribe(ctx, key)
}

// subscribe subscribes on every node that can notify, and merges their
// notifications: the returned channel receives a value once releases were
// seen on a majority of nodes since the last value. A holder's release
// reaches every node that held it, a majority; a waiter's own failed
// attempts release at most a minority, which must not wake it again and
// again. It fails unless a majority of nodes subscribed; once a majority
// did, it waits for the others as long again as that took, and for the
// node timeout at most (a node that answers later is unsubscribed at
// once, in the background, which Close waits for).
//
// The merging goroutine belongs to the subscription: cancel stops it.
func (l *locker) subscribe(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	n := len(l.nodes)
	chans := make([]<-chan struct{}, n)
	cancels := make([]func(), n)
	errs := make([]error, n)
	var idx []int
	for i, nd := range l.nodes {
		if nd.notify == nil {
			errs[i] = fmt.Errorf("%T cannot notify: %w", nd.d, errors.ErrUnsupported)
			continue
		}
		idx = append(idx, i)
	}
	timeout := l.cfg.timeoutFor(l.cfg.lockTTL)
	type subscribed struct {
		i      int
		c      <-chan struct{}
		cancel func()
		err    error
	}
	results := make(chan subscribed, len(idx))
	var mu sync.Mutex
	decided := false // set once subscribe stops waiting: later subscriptions undo themselves
	start := time.Now()
	for _, i := range idx {
		l.bg.add()
		l.workers.do(func() {
			defer l.bg.done()
			// The subscription may live on ctx, so the node timeout
			// cancels it only while Subscribe has not returned.
			sctx, cancel := context.WithCancel(ctx)
			t := time.AfterFunc(timeout, cancel)
			c, unsub, err := l.nodes[i].notify.Subscribe(sctx, key)
			if !t.Stop() && err == nil {
				unsub()
				err = fmt.Errorf("subscribe: %w", context.DeadlineExceeded)
			}
			if err != nil {
				cancel()
				results <- subscribed{i: i, err: err}
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if decided {
				unsub()
				cancel()
				return
			}
			results <- subscribed{i: i, c: c, cancel: func() { unsub(); cancel() }}
		})
	}
	// A node whose client ignores cancellation (a go-redis read sees only
	// its deadline) could hold Subscribe for its read timeout: once a
	// majority subscribed, the others get as long again as that took, and
	// the whole wait is bounded by the node timeout.
	bound := time.NewTimer(timeout)
	defer bound.Stop()
	var grace <-chan time.Time
	ok := 0
collect:
	for received := 0; received < len(idx); {
		select {
		case r := <-results:
			received++
			if r.err != nil {
				errs[r.i] = r.err
				continue
			}
			chans[r.i], cancels[r.i] = r.c, r.cancel
			if ok++; ok >= l.quorum && grace == nil {
				g := time.NewTimer(max(time.Since(start), minGrace))
				defer g.Stop()
				grace = g.C
			}
		case <-grace:
			break collect
		case <-bound.C:
			break collect
		}
	}
	mu.Lock()
	decided = true
	mu.Unlock()
	// Those that subscribed before are in results; later ones undo
	// themselves.
	for {
		select {
		case r := <-results:
			if r.err != nil {
				errs[r.i] = r.err
			} else {
				chans[r.i], cancels[r.i] = r.c, r.cancel
			}
			continue
		default:
		}
		break
	}
	for i := range n {
		if chans[i] == nil && errs[i] == nil {
			errs[i] = noAnswer(timeout)
		}
	}
	unsubscribe := func() {
		for _, c := range cancels {
			if c != nil {
				c()
			}
		}
	}
	cases := []reflect.SelectCase{{}} // [0] is stop
	var from []int                    // node of cases[k+1]
	for i, c := range chans {
		if c != nil {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c)})
			from = append(from, i)
		}
	}
	if len(from) < l.quorum {
		unsubscribe()
		return nil, nil, l.quorumError("subscribe to", key, len(from), errs, nil)
	}
	out := make(chan struct{}, 1)
	stop := make(chan struct{})
	done := make(chan struct{})
	cases[0] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(stop)}
	go func() {
		defer close(done)
		seen := make([]bool, n)
		count := 0
		for {
			k, _, ok := reflect.Select(cases)
			if k == 0 {
				return
			}
			if !ok { // closed, against the contract: ignore it from now on
				cases[k].Chan = reflect.Value{}
				continue
			}
			if i := from[k-1]; !seen[i] {
				seen[i] = true
				count++
			}
			if count >= l.quorum {
				select {
				case out <- struct{}{}:
				default: // a wakeup is pending already
				}
				clear(seen)
				count = 0
			}
		}
	}()
	cancel := sync.OnceFunc(func() {
		close(stop)
		<-done
		unsubscribe()
	})
	return out, cancel, nil
}
