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
// errors.ErrUnsupported. Nodes do not queue waiters (see Acquire), so the
// token is not passed on.
func (l *locker) Subscribe(ctx context.Context, key, _ string) (<-chan struct{}, func(), error) {
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
// again. It fails unless a majority of nodes subscribed; a node that does
// not answer delays it by the node timeout.
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
	var wg sync.WaitGroup
	for _, i := range idx {
		wg.Go(func() {
			// The subscription may live on ctx, so the node timeout
			// cancels it only while Subscribe has not returned.
			sctx, cancel := context.WithCancel(ctx)
			t := time.AfterFunc(timeout, cancel)
			c, unsub, err := l.nodes[i].notify.Subscribe(sctx, key, "") // nodes do not queue: see Acquire
			if !t.Stop() && err == nil {
				unsub()
				err = fmt.Errorf("subscribe: %w", context.DeadlineExceeded)
			}
			if err != nil {
				cancel()
				errs[i] = err
				return
			}
			chans[i] = c
			cancels[i] = func() { unsub(); cancel() }
		})
	}
	wg.Wait()
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
