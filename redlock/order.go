package redlock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// tokenCalls orders the acquires and releases of one token on each node:
// a call queued on a node starts once the calls queued before it there
// have returned. A release (or the undo of a failed acquire) therefore
// reaches a node only after that node answered the acquire or gave up on
// it, never before an acquire still on its way (see [locker.Acquire]); and
// a later attempt with the same token reaches it only after the undo of
// the attempt before. A round queues its calls on every node at once
// (see queueRound), so two rounds of one token are in the same order on
// every node: two Releases of one token at once (dlock's Close frees the
// leases it ends while their holders release them too) answer as two
// releases on one server would, the first freeing the lock and the second
// finding it free. Queued node by node, each could reach some nodes
// first, free them, find the others freed by the other, and both would
// report ErrNotHeld of a lock the token held.
//
// An acquire is not sent to a node where an earlier acquire of its token
// has not returned, nor where a release of it may still land (see
// unsureReleases): it is answered at once as not sent (see
// locker.acquireBarredLocked). Otherwise each attempt of a waiting caller on a
// hung node would queue an acquire and an undo behind the last, two
// goroutines per attempt for as long as the node hangs.
type tokenCalls struct {
	nodes []nodeQueue // per node
	n     int         // calls queued and not yet returned
}

// nodeQueue is a token's calls on one node.
type nodeQueue struct {
	tail     *nodeCall // the last call queued; nil if none
	acquires int       // acquires queued and not yet returned
}

// nodeCall is one call of a token queued on one node.
type nodeCall struct {
	q       *tokenCalls // nil until queued
	node    int
	acquire bool          // an acquire, not a release
	done    bool          // it returned
	waiting chan struct{} // made by a call that waits for it; closed once it returned
	// prev is closed once the calls queued before it on its node have
	// returned, and release, for an acquire, once the late release of
	// its key there returned (see lateReleases); each is nil if there
	// is nothing to wait for.
	prev, release <-chan struct{}
	// after is, for an acquire, the late release of its key on its node
	// that release waits for (see lateReleases), nil if none; lateWait
	// bounds that wait, if not zero.
	after    *nodeCall
	lateWait time.Duration
	// key is the call's key, set on an acquire (to find the late
	// releases it waits for) and on a release recorded in l.late.
	key  string
	late bool // recorded in l.late (see lateReleases)
}

// errEarlierAcquire is an acquire's answer for a node where an earlier
// acquire of its token has not returned: not sent, so surely not applied.
var errEarlierAcquire = fmt.Errorf("not asked: an earlier acquire of this token there has not returned: %w", driver.ErrUnavailable)

// enqueueLocked queues c, a call of token on node i, and sets what it
// waits for before it starts. l.mu must be held.
func (l *locker) enqueueLocked(token string, i int, c *nodeCall) {
	q := l.queues[token]
	if q == nil {
		q = &tokenCalls{nodes: make([]nodeQueue, len(l.nodes))}
		l.queues[token] = q
	}
	if t := q.nodes[i].tail; t != nil && !t.done {
		c.prev = t.awaited()
	}
	if c.acquire {
		if r := l.late[c.key]; r != nil && r[i] != nil {
			c.after, c.release = r[i], r[i].awaited()
		}
	}
	q.nodes[i].tail = c
	c.q, c.node = q, i
	q.n++
	if c.acquire {
		q.nodes[i].acquires++
	}
}

// awaited returns a channel closed once c returned; c has not. l.mu must
// be held.
func (c *nodeCall) awaited() <-chan struct{} {
	if c.waiting == nil {
		c.waiting = make(chan struct{})
	}
	return c.waiting
}

// errLateUndo is an acquire's answer for a node that answered busy while
// a release of its key by this driver there had not returned when the
// acquire was sent (see lateReleases): the node may be held by the
// released token alone, which nobody holds, so busy would be untrue. The
// node surely did not grant the attempt.
var errLateUndo = fmt.Errorf("busy, maybe only with a token this driver is releasing there: %w", driver.ErrUnavailable)

// lateReturned reports whether the late release that c, an acquire, waits
// for returned, or there is none.
func (l *locker) lateReturned(c *nodeCall) bool {
	if c.after == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return c.after.done
}

// acquireBarredLocked returns why an acquire of token may not go to node
// i (see tokenCalls), or nil if it may. l.mu must be held.
func (l *locker) acquireBarredLocked(token string, i int) error {
	if q := l.queues[token]; q != nil && q.nodes[i].acquires > 0 {
		return errEarlierAcquire
	}
	if l.unsureOnLocked(token, i) {
		return errUnsureRelease
	}
	return nil
}

// finish records that c, a call of token, returned.
func (l *locker) finish(token string, c *nodeCall) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c.done = true
	if c.waiting != nil {
		close(c.waiting)
	}
	if c.acquire {
		c.q.nodes[c.node].acquires--
	}
	if c.late {
		l.late.remove(c)
	}
	if c.q.n--; c.q.n == 0 {
		delete(l.queues, token)
	}
}

// queueRound queues a round of token's calls, calls[i] on node i (see
// tokenCalls), on every node i that ask (if not nil), called with l.mu
// held, lets it go to: all under one hold of l.mu, so that on each node
// the round comes after the rounds of token queued before it and before
// those queued after it. Then it runs call for each queued node, as
// start does. A node left out keeps calls[i].q nil.
func (l *locker) queueRound(token string, calls []nodeCall, ask func(i int) bool, out chan<- answer, call func(i int, waited bool) answer) {
	l.mu.Lock()
	for i := range calls {
		if ask == nil || ask(i) {
			l.enqueueLocked(token, i, &calls[i])
		}
	}
	l.mu.Unlock()
	for i := range calls {
		if calls[i].q == nil {
			continue
		}
		if l.testHookQueued != nil {
			l.testHookQueued(token, i)
		}
		l.start(token, i, &calls[i], out, call)
	}
}

// start runs call for node i on a worker and sends its answer to out,
// which must have room for it. If c is not nil, it is a call of token
// that queueRound queued: it starts once what it waits for returned, and
// waited tells call whether it had to wait. The call belongs to the
// locker: Close waits for it (see Close), however long its caller waits.
func (l *locker) start(token string, i int, c *nodeCall, out chan<- answer, call func(i int, waited bool) answer) {
	l.bg.add()
	l.workers.do(func() {
		defer l.bg.done()
		waited := false
		if c != nil {
			if c.prev != nil {
				<-c.prev
			}
			if c.release != nil {
				awaitAtMost(c.release, c.lateWait)
			}
			waited = c.prev != nil || c.release != nil
		}
		a := call(i, waited)
		if c != nil {
			l.finish(token, c)
		}
		out <- a
	})
}

// awaitAtMost waits until ch is closed, for at most d if d is not zero.
func awaitAtMost(ch <-chan struct{}, d time.Duration) {
	if d == 0 {
		<-ch
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

// lastOf returns a function that runs f when it has been called n times.
func lastOf(n int, f func()) func() {
	left := new(atomic.Int32)
	left.Store(int32(n))
	return func() {
		if left.Add(-1) == 0 {
			f()
		}
	}
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

// unsureReleases records, per token, the nodes where a release of the
// token (a Release, or the undo of a failed acquire) gave up without a
// known outcome: its request may still reach the node, after requests
// sent later on other connections. A later acquire with that token (dlock
// retries a busy attempt with its token) is not sent to those nodes: its
// grant there would count for the lease and then be freed by the late
// release, leaving the lease on less than a majority while another token
// takes the rest. The record lasts the lock's TTL, at least
// minUnsureHold, from the release's give-up; a release delayed longer is
// what the package documentation says remains.
type unsureReleases struct {
	m       map[string]*unsureNodes
	sweepAt int // sweep expired records when m grows to this size
}

// unsureNodes are one token's nodes with a release of unknown outcome.
type unsureNodes struct {
	nodes []bool
	until time.Time
}

const minUnsureHold = time.Minute

// errUnsureRelease is an acquire's answer for a node where a release of
// its token may still land: not sent, so surely not applied.
var errUnsureRelease = fmt.Errorf("not asked: a release of this token whose outcome is unknown may still reach the node and free its grant: %w", driver.ErrUnavailable)

// releaseGaveUp reports whether a release's answer leaves its outcome
// unknown: it failed, and not because the node did not hold the token or
// surely did not apply it.
func releaseGaveUp(err error) bool {
	return err != nil && !isNotHeld(err) && !errors.Is(err, driver.ErrUnavailable)
}

// markUnsure records that a release of token on node i gave up (see
// unsureReleases), for a lock with ttl.
func (l *locker) markUnsure(token string, i int, ttl time.Duration) {
	now := time.Now()
	until := now.Add(max(ttl, minUnsureHold))
	l.mu.Lock()
	defer l.mu.Unlock()
	u := &l.unsure
	if u.m == nil {
		u.m = make(map[string]*unsureNodes)
	}
	r := u.m[token]
	if r == nil {
		if len(u.m) >= u.sweepAt {
			for t, r := range u.m {
				if now.After(r.until) {
					delete(u.m, t)
				}
			}
			u.sweepAt = 2*len(u.m) + 16
		}
		r = &unsureNodes{nodes: make([]bool, len(l.nodes))}
		u.m[token] = r
	}
	r.nodes[i] = true
	if until.After(r.until) {
		r.until = until
	}
}

// unsureOn reports whether a release of token on node i may still land
// (see unsureReleases).
func (l *locker) unsureOn(token string, i int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.unsureOnLocked(token, i)
}

// unsureOnLocked is unsureOn with l.mu held.
func (l *locker) unsureOnLocked(token string, i int) bool {
	r := l.unsure.m[token]
	if r == nil {
		return false
	}
	if time.Now().After(r.until) {
		delete(l.unsure.m, token)
		return false
	}
	return r.nodes[i]
}
