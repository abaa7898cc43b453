package redisdriver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redisdriver/internal/autopipe"
	"github.com/dlock-go/dlock/redisdriver/internal/pubsub"
)

// leftWaiter is a waiter's own channel that a handoff waiter (see
// SubscribeHandoff) is leaving: its UNSUBSCRIBE is on the way, and its
// cancel waits for the server's confirmation. A release the server ran
// before the UNSUBSCRIBE may have granted it the key: the grant's message
// comes on conn before the confirmation, and is delivered to w, where the
// caller finds it after cancel and releases it (or keeps it, if its own
// Acquire returned that hold). After the confirmation the server sends
// nothing more to the channel, and no release grants the key to a waiter
// that does not listen (see wakeNext), so when cancel returns the
// waiter's token holds nothing the caller does not know of.
//
// done is closed when the wait ends: confirmed, or not (conn broke, the
// driver closed), and w is then unsure (see gone).
type leftWaiter struct {
	w    *waiter
	conn *pubsub.Conn
	done chan struct{}
}

// endLocked ends the wait of l; confirmed reports the server's UNSUBSCRIBE
// reply. The Mux must be locked, and l removed from n.left.
func (l leftWaiter) endLocked(confirmed bool) {
	if !confirmed {
		l.w.unsure = true
	}
	close(l.done)
}

// waiter is one subscription: Subscribe's channel of wake-ups, or
// SubscribeHandoff's channel of turns. Its channel has one sender, the
// notifier, under the Mux's lock.
type waiter struct {
	plain chan struct{}    // Subscribe's, or nil
	turns chan driver.Turn // SubscribeHandoff's, or nil
	token string           // the subscription's token, or ""
	held  bool             // an Acquire with token returned the key, or the caller kept it; see leftWaiter
	// granted: a grant was put in turns; the caller took it or releases it.
	granted bool
	// cut: a channel of w was taken off its connection while w was on it
	// (the connection broke, its slot moved, it failed): a grant's
	// message may have been lost with it (see gone).
	cut bool
	// unsure: the server never confirmed that w's own channel was
	// unsubscribed: a grant may have been made and its message lost.
	unsure bool
}

// Wake implements pubsub.Member: it wakes w, unless a wake-up (or a grant) is already waiting.
func (w *waiter) Wake() {
	if w.plain != nil {
		select {
		case w.plain <- struct{}{}:
		default:
		}
		return
	}
	select {
	case w.turns <- driver.Turn{}:
	default:
	}
}

// grant delivers t, a grant, to w, a handoff waiter, in place of the turn
// still unread in its channel, if any: a plain wake-up, or an earlier
// grant to w's token, which has ended by then (the scripts grant a key
// only when it is free), so that the channel holds the grant that stands.
// The Mux is locked.
func (w *waiter) grant(t driver.Turn) {
	select {
	case w.turns <- t:
	case <-w.turns:
		w.turns <- t // room: only the notifier sends, under its lock
	}
	w.granted = true
}

// SubscribeHandoff implements driver.Handoff: Subscribe with a token, whose
// waiter takes grants. A release that finds the waiter first in the queue,
// with an attempt stored (see acquireScript), grants it the key and
// publishes "grant ATTEMPT FENCE" on its own channel; the reader turns
// that into a Turn with Granted set. cancel waits for the server to
// confirm the UNSUBSCRIBE, so that a grant published before it is in the
// channel when cancel returns (see leftWaiter).
func (d *locker) SubscribeHandoff(ctx context.Context, key, token string) (<-chan driver.Turn, func(), error) {
	if err := d.check(); err != nil {
		return nil, nil, err
	}
	if err := checkToken(token); err != nil {
		return nil, nil, err
	}
	if d.cfg.replicaAcks > 0 {
		return nil, nil, errHandoffReplicated
	}
	w := &waiter{turns: make(chan driver.Turn, 1), token: token}
	cancel, err := d.subscribe(ctx, key, w)
	if err != nil {
		return nil, nil, err
	}
	return w.turns, cancel, nil
}

// errHandoffReplicated refuses handoff with ReplicaAcks: a release's grant
// is not followed by WAIT, so it could be lost in a failover that an
// acquire's grant, acknowledged by replicas, survives. Waiters then
// subscribe plainly (dlock falls back on errors.ErrUnsupported) and take
// the key with their own attempts.
var errHandoffReplicated = fmt.Errorf("redisdriver: handoff with replica_acks: %w", errors.ErrUnsupported)

// gone is the end of cancel, once w left every channel of lk and no
// longer receives anything. A plain waiter (Subscribe's) needs nothing:
// it is never queued, so a release that woke it woke every plain waiter,
// and no wake-up of it was its turn alone. A handoff waiter's turns stay
// in its channel, where the caller finds them: a grant it releases, a
// wake-up it passes on (see driver.Handoff).
//
// A handoff waiter whose connection broke (or whose channel moved) while
// it waited, or whose UNSUBSCRIBE was never confirmed, may have been
// granted the key by a release that found it listening, with the message
// lost with the connection: the key is then its token's, which nobody
// knows. Unless the caller learnt of a hold of the token (a grant
// delivered, an Acquire that returned the key), w's channel gets a Turn
// with Granted set and Attempt 0, "perhaps granted", which the caller
// releases before it returns (a token that holds nothing makes that a
// no-op), so that the key is not kept from the others for a TTL. A plain
// wake-up it replaces, maybe w's turn, is passed on here, before cancel
// returns: that release wakes nobody.
func (n *notifier) gone(lk string, w *waiter) {
	if w.turns == nil {
		return
	}
	n.mux.Lock()
	turn := false
	if (w.cut || w.unsure) && !w.held && !w.granted {
		turn = len(w.turns) > 0
		w.grant(driver.Turn{Granted: true}) // in place of a wake-up, passed on below
	}
	closed := n.mux.ClosedLocked()
	n.mux.Unlock()
	if turn && !closed {
		ctx, cancel := context.WithTimeout(n.mux.Context(), passOnTimeout)
		defer cancel()
		n.passOnNow(ctx, lk)
	}
}

// awaitLeft waits until the leaving of the waiter's own channel ch ends
// (done closed: see leftWaiter), or the server stays silent for the
// confirmation timeout: the connection is then closed (its reader replaces
// it) and the waiter left unsure.
func (n *notifier) awaitLeft(ch string, done <-chan struct{}) {
	timer := time.NewTimer(n.mux.ConfirmTimeout())
	defer timer.Stop()
	select {
	case <-done:
		return
	case <-timer.C:
	}
	n.mux.Lock()
	l, ok := n.left[ch]
	if ok && l.done == done {
		delete(n.left, ch)
		l.endLocked(false)
	}
	n.mux.Unlock()
	if ok {
		n.mux.Break(l.conn)
	}
}

// acquired records that an Acquire with token, queued at lk for a handoff,
// returned the key: a grant to token that reaches the notifier after its
// waiter left is the hold that Acquire returned (see leftWaiter).
func (n *notifier) acquired(lk, token string) {
	ch := waiterChannel(lk, waiterTag(token))
	n.mux.Lock()
	defer n.mux.Unlock()
	if w := n.own[ch]; w != nil && w.token == token {
		w.held = true
	}
}

// parseGrant reads the payload of a grant, "grant ATTEMPT FENCE" (see
// wakeNext); ok is false for a plain wake-up.
func parseGrant(payload string) (t driver.Turn, ok bool) {
	rest, ok := strings.CutPrefix(payload, "grant ")
	if !ok {
		return driver.Turn{}, false
	}
	a, f, _ := strings.Cut(rest, " ")
	attempt, err1 := strconv.ParseUint(a, 10, 64)
	fence, err2 := strconv.ParseUint(f, 10, 64)
	if err1 != nil || err2 != nil {
		return driver.Turn{}, false
	}
	return driver.Turn{Granted: true, Attempt: attempt, Fence: fence}, true
}

// grantTo delivers t, a grant on s, a waiter's own channel, to its
// handoff waiter: only handoff waiters join their own channels (see
// subscribe). The Mux is locked.
func grantTo(s *pubsub.Sub, t driver.Turn) {
	for m := range s.Members() {
		if w := m.(*waiter); w.turns != nil {
			w.grant(t)
			return
		}
	}
}

// passOn runs wakeScript for lk in the background, for a waiter woken
// for its turn after it stopped waiting, so that the release that woke it
// still wakes someone.
func (n *notifier) passOn(lk string) {
	n.mux.Lock()
	defer n.mux.Unlock()
	n.mux.GoLocked(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, passOnTimeout)
		defer cancel()
		n.passOnNow(ctx, lk)
	})
}

// passOnNow runs wakeScript for lk: if the key is free, its next waiter is
// woken (or handed the key) as by a release.
func (n *notifier) passOnNow(ctx context.Context, lk string) {
	wakeScript.Run(ctx, n.d.client, []string{lk, fenceKey(lk), queueKey(lk), attemptsKey(lk)}, "", n.d.publish, n.scope)
}

// passOnTimeout bounds passOn; if it fails, the waiters wake by their own
// timers, as if the release had not been announced.
const passOnTimeout = 5 * time.Second

// lockKeyOfWaiter returns the lock key of a waiter's channel (see
// waiterChannel), and false for other channels.
func lockKeyOfWaiter(ch string) (string, bool) {
	i := len(ch) - len(":w:") - 2*waiterTagBytes
	if i < 1 || ch[i-1] != '}' || ch[i:i+len(":w:")] != ":w:" {
		return "", false
	}
	return ch[:i], true
}

// releaseUnknown releases, at close, the tokens (lock key by token) of
// the handoff waiters that are leaving, their UNSUBSCRIBE not yet
// confirmed (see leftWaiter). Their callers gave up: a grant a release
// made them, its message unread or lost with a partitioned connection,
// is never to be used. Each caller would release its token itself (see
// gone), but only through this driver, closed by then, and the key would
// stay held until its TTL by a token nobody uses. A token that holds
// nothing is released as a no-op. Waiters still waiting are left alone:
// their callers may be making an attempt with the token, whose hold they
// would then keep. It runs before the client closes, bounded by
// passOnTimeout, all releases at once.
func (n *notifier) releaseUnknown(tokens map[string]string) {
	if len(tokens) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), passOnTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for token, lk := range tokens {
		wg.Go(func() {
			eval(ctx, autopipe.OnceDoer{C: n.d.client}, releaseScript, []any{nil, nil, 4, lk, fenceKey(lk), queueKey(lk), attemptsKey(lk),
				token, n.d.publish, n.scope, waiterTag(token)})
		})
	}
	wg.Wait()
}

// Cut implements pubsub.Member: a grant's message may have been lost
// with w's channel (see gone).
func (w *waiter) Cut() { w.cut = true }

// leave removes w from s (see pubsub.Mux.Leave). A handoff waiter's own
// channel is remembered until the UNSUBSCRIBE is answered (see
// leftWaiter): leave then returns the channel closed when that wait
// ends, for the caller to wait on.
func (n *notifier) leave(s *pubsub.Sub, w *waiter) (done chan struct{}) {
	n.mux.Leave(s, w, func(c *pubsub.Conn, sent bool) {
		// A waiter that knows of a hold of its token (a grant
		// delivered, an Acquire that returned the key) needs no wait:
		// a grant removes the token's queue entry, and so does the
		// Acquire or else the release of the hold, so no later
		// release grants the token anything; a grant of that same
		// hold still on its way is dropped.
		ch := s.Channel()
		_, own := lockKeyOfWaiter(ch)
		own = own && w.turns != nil && !w.held && !w.granted
		switch {
		case !own:
		case sent:
			if l, ok := n.left[ch]; ok {
				delete(n.left, ch)
				l.endLocked(false)
			}
			done = make(chan struct{})
			n.left[ch] = leftWaiter{w: w, conn: c, done: done}
		default:
			w.unsure = true // no UNSUBSCRIBE can be confirmed
		}
	})
	return done
}
