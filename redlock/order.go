package redlock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// tokenCalls orders the acquires and releases of one token on each node:
// a call queued on a node starts once the calls queued before it there
// have returned. A release (or the undo of a failed acquire) therefore
// reaches a node only after that node answered the acquire or gave up on
// it, never before an acquire still on its way (see [locker.Acquire]); and
// a later attempt with the same token reaches it only after the undo of
// the attempt before.
type tokenCalls struct {
	tails []chan struct{} // per node: closed when the last call queued there returned; nil if none
	n     int             // calls queued and not yet returned
}

// enqueue queues a call of token on node i. It returns a channel closed
// when the calls queued before it on that node have returned (nil if
// none), and done, which the call runs once it has returned.
func (l *locker) enqueue(token string, i int) (prev <-chan struct{}, done func()) {
	mine := make(chan struct{})
	l.mu.Lock()
	q := l.queues[token]
	if q == nil {
		q = &tokenCalls{tails: make([]chan struct{}, len(l.nodes))}
		l.queues[token] = q
	}
	if q.tails[i] != nil {
		prev = q.tails[i]
	}
	q.tails[i] = mine
	q.n++
	l.mu.Unlock()
	return prev, func() {
		close(mine)
		l.mu.Lock()
		if q.n--; q.n == 0 {
			delete(l.queues, token)
		}
		l.mu.Unlock()
	}
}

// queue runs call for node i on a worker, after the calls of token queued
// before it on that node (see tokenCalls; none if token is empty), and
// sends its answer to out, which must have room for it. The call belongs
// to the locker: Close waits for it (see Close), however long its caller
// waits.
func (l *locker) queue(token string, i int, out chan<- answer, call func(i int) answer) {
	var prev <-chan struct{}
	done := func() {}
	if token != "" {
		prev, done = l.enqueue(token, i)
	}
	l.bg.add()
	l.workers.do(func() {
		defer l.bg.done()
		if prev != nil {
			<-prev
		}
		a := call(i)
		done()
		out <- a
	})
}

// background counts the node calls that may outlive their caller: the
// answers after a quorum decided, the undo of a failed acquire, the
// release of a late grant.
type background struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0, if someone waits
}

func (b *background) add() {
	b.mu.Lock()
	b.n++
	b.mu.Unlock()
}

func (b *background) done() {
	b.mu.Lock()
	if b.n--; b.n == 0 && b.idle != nil {
		close(b.idle)
		b.idle = nil
	}
	b.mu.Unlock()
}

// wait waits until no call is counted, for at most d.
func (b *background) wait(d time.Duration) {
	b.mu.Lock()
	if b.n == 0 {
		b.mu.Unlock()
		return
	}
	if b.idle == nil {
		b.idle = make(chan struct{})
	}
	idle := b.idle
	b.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
}

// noAnswer is the error of a node that had not answered when its round
// was decided: its outcome is unknown. The call goes on in the background.
func noAnswer(timeout time.Duration) error {
	return fmt.Errorf("no answer within the node timeout %v: %w", timeout, context.DeadlineExceeded)
}

// surelyNot reports whether an acquire's answer shows that the node does
// not hold the lock for its token: it answered busy, or it surely did not
// apply the attempt.
func surelyNot(a answer) bool {
	if a.err == nil {
		return !a.res.Acquired
	}
	return errors.Is(a.err, driver.ErrUnavailable)
}
