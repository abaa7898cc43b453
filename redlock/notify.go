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
	timeout := l.cfg.timeoutFor(l.cfg.lockTTL)
	s := &nodeSubs{
		chans:   make([]<-chan struct{}, len(l.nodes)),
		cancels: make([]func(), len(l.nodes)),
		errs:    make([]error, len(l.nodes)),
	}
	start := time.Now()
	asked := l.startSubscribes(ctx, key, timeout, s)
	s.await(asked, l.quorum, timeout, start)
	s.decide()
	for i := range s.chans {
		if s.chans[i] == nil && s.errs[i] == nil {
			s.errs[i] = noAnswer(timeout)
		}
	}
	if got := s.subscribed(); got < l.quorum {
		s.unsubscribe()
		return nil, nil, l.quorumError("subscribe to", key, got, s.errs, nil)
	}
	out, cancel := s.merge(l.quorum)
	return out, cancel, nil
}

// nodeSubs is one subscribe call's subscriptions, by node.
type nodeSubs struct {
	chans   []<-chan struct{} // a node's notifications, or nil
	cancels []func()          // a node's unsubscribe, or nil
	errs    []error           // why a node has no subscription
	results chan nodeSub      // the answers of the nodes asked

	mu      sync.Mutex
	decided bool // subscribe stopped waiting: later subscriptions undo themselves
}

// nodeSub is one node's answer to Subscribe.
type nodeSub struct {
	i      int
	c      <-chan struct{}
	cancel func()
	err    error
}

// startSubscribes asks every node that can notify to subscribe to key,
// each bounded by timeout, and returns how many were asked; their answers
// come on s.results (see nodeSubs.decide). A node that cannot notify gets
// its error in s.errs.
func (l *locker) startSubscribes(ctx context.Context, key string, timeout time.Duration, s *nodeSubs) (asked int) {
	var idx []int
	for i, nd := range l.nodes {
		if nd.notify == nil {
			s.errs[i] = fmt.Errorf("%T cannot notify: %w", nd.d, errors.ErrUnsupported)
			continue
		}
		idx = append(idx, i)
	}
	s.results = make(chan nodeSub, len(idx))
	for _, i := range idx {
		l.bg.add()
		l.workers.do(func() {
			defer l.bg.done()
			s.answer(l.subscribeNode(ctx, i, key, timeout))
		})
	}
	return len(idx)
}

// subscribeNode subscribes node i to key within timeout. The subscription
// may live on ctx, so the node timeout cancels it only while Subscribe has
// not returned.
func (l *locker) subscribeNode(ctx context.Context, i int, key string, timeout time.Duration) nodeSub {
	sctx, cancel := context.WithCancel(ctx)
	t := time.AfterFunc(timeout, cancel)
	c, unsub, err := l.nodes[i].notify.Subscribe(sctx, key)
	if !t.Stop() && err == nil {
		unsub()
		err = fmt.Errorf("subscribe: %w", context.DeadlineExceeded)
	}
	if err != nil {
		cancel()
		return nodeSub{i: i, err: err}
	}
	return nodeSub{i: i, c: c, cancel: func() { unsub(); cancel() }}
}

// answer hands r to subscribe, or, once subscribe stopped waiting, undoes
// r's subscription.
func (s *nodeSubs) answer(r nodeSub) {
	if r.err != nil {
		s.results <- r
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.decided {
		r.cancel()
		return
	}
	s.results <- r
}

// await takes the answers of the asked nodes until all came, or the wait
// ends. A node whose client ignores cancellation (a go-redis read sees
// only its deadline) could hold Subscribe for its read timeout: once a
// quorum subscribed, the others get as long again as that took (since
// start), and the whole wait is bounded by timeout.
func (s *nodeSubs) await(asked, quorum int, timeout time.Duration, start time.Time) {
	bound := time.NewTimer(timeout)
	defer bound.Stop()
	var grace <-chan time.Time
	ok := 0
	for received := 0; received < asked; received++ {
		select {
		case r := <-s.results:
			if s.record(r) && grace == nil {
				if ok++; ok >= quorum {
					g := time.NewTimer(max(time.Since(start), minGrace))
					defer g.Stop()
					grace = g.C
				}
			}
		case <-grace:
			return
		case <-bound.C:
			return
		}
	}
}

// record keeps the answer r and reports whether it is a subscription.
func (s *nodeSubs) record(r nodeSub) bool {
	if r.err != nil {
		s.errs[r.i] = r.err
		return false
	}
	s.chans[r.i], s.cancels[r.i] = r.c, r.cancel
	return true
}

// decide ends the wait: the answers already sent are kept, and later
// subscriptions undo themselves (see answer).
func (s *nodeSubs) decide() {
	s.mu.Lock()
	s.decided = true
	s.mu.Unlock()
	for {
		select {
		case r := <-s.results:
			s.record(r)
		default:
			return
		}
	}
}

// subscribed counts the nodes subscribed.
func (s *nodeSubs) subscribed() int {
	n := 0
	for _, c := range s.chans {
		if c != nil {
			n++
		}
	}
	return n
}

// unsubscribe ends every subscription.
func (s *nodeSubs) unsubscribe() {
	for _, c := range s.cancels {
		if c != nil {
			c()
		}
	}
}

// merge starts the goroutine that merges the nodes' notifications: out
// receives a value once a quorum of nodes notified since the last value.
// cancel stops the goroutine, then unsubscribes every node.
func (s *nodeSubs) merge(quorum int) (out <-chan struct{}, cancel func()) {
	cases := []reflect.SelectCase{{}} // [0] is stop
	var from []int                    // node of cases[k+1]
	for i, c := range s.chans {
		if c != nil {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c)})
			from = append(from, i)
		}
	}
	wake := make(chan struct{}, 1)
	stop := make(chan struct{})
	done := make(chan struct{})
	cases[0] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(stop)}
	go func() {
		defer close(done)
		mergeLoop(cases, from, len(s.chans), quorum, wake)
	}()
	return wake, sync.OnceFunc(func() {
		close(stop)
		<-done
		s.unsubscribe()
	})
}

// mergeLoop receives on cases until cases[0] (stop) is ready, and sends a
// wake-up on out, unless one is pending, each time the nodes of n seen
// since the last wake-up (from[k-1] is the node of cases[k]) reach quorum.
func mergeLoop(cases []reflect.SelectCase, from []int, n, quorum int, out chan<- struct{}) {
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
		if count >= quorum {
			select {
			case out <- struct{}{}:
			default: // a wakeup is pending already
			}
			clear(seen)
			count = 0
		}
	}
}
