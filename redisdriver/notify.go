package redisdriver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/dlock-go/dlock/redisdriver/internal/pubsub"
	"github.com/redis/go-redis/v9"
)

// notifier carries the driver's release notifications over a
// [pubsub.Mux]: each waiter subscribes to the release channel of its key
// and, with a token, to its own channel (see waiterChannel), where a
// release wakes it alone or hands it the key (see handoff.go). The
// notifier is the Mux's Hooks: it turns messages into wake-ups and
// grants, and keeps, under the Mux's lock, the handoff waiters it must
// find by channel.
type notifier struct {
	d   *locker
	mux *pubsub.Mux

	// scope ends the names of the key-wide release channels (see
	// releasedChannel).
	scope string

	// Guarded by the Mux's lock.
	left map[string]leftWaiter // by channel: see leftWaiter
	// own holds the handoff waiters by their own channel, from
	// subscribe to cancel, whatever becomes of their subscriptions
	// meanwhile, so that acquired finds them.
	own map[string]*waiter
}

var _ pubsub.Hooks = (*notifier)(nil)

func newNotifier(d *locker) *notifier {
	n := &notifier{d: d, scope: channelScope(d.client),
		left: make(map[string]leftWaiter), own: make(map[string]*waiter)}
	n.mux = pubsub.New(d.client, n)
	return n
}

// channelScope returns what ends the release channels of a client's
// database: Redis pub/sub ignores the database number, so without it a
// release in one database would wake the waiters of the same key in every
// other. Database 0 (and Cluster, which has no other) keeps the plain
// names.
func channelScope(client redis.UniversalClient) string {
	if c, ok := client.(*redis.Client); ok && c.Options().DB != 0 {
		return ":db" + strconv.Itoa(c.Options().DB)
	}
	return ""
}

// releasedChannel is where releaseScript announces the release of lockKey
// when no queued waiter listens: channelOf, scoped by database.
func (n *notifier) releasedChannel(lockKey string) string {
	return channelOf(lockKey) + n.scope
}

// Subscribe implements driver.Notifier. It returns once Redis has confirmed
// the subscription, so a release published after it returns is seen.
func (d *locker) Subscribe(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	w := &waiter{plain: make(chan struct{}, 1)}
	cancel, err := d.subscribe(ctx, key, w)
	if err != nil {
		return nil, nil, err
	}
	return w.plain, cancel, nil
}

// subscribe subscribes w to the release channel of key and, if it has a
// token, to its own channel; it returns once both are live.
func (d *locker) subscribe(ctx context.Context, key string, w *waiter) (func(), error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	lk := d.lockKey(key)
	chans := []string{d.notify.releasedChannel(lk)}
	if w.token != "" {
		chans = append(chans, waiterChannel(lk, waiterTag(w.token)))
	}
	n := d.notify
	var readyBuf [2]*pubsub.Readiness
	var freshBuf [2]*pubsub.Sub
	subs := make([]*pubsub.Sub, len(chans))
	readies, fresh := readyBuf[:len(chans)], freshBuf[:0]
	fresh, err := n.mux.Join(chans, w, subs, readies, fresh)
	if err != nil {
		return nil, fmt.Errorf("redisdriver: subscribe %q: %w", key, err)
	}
	if w.turns != nil {
		n.mux.Lock()
		n.own[chans[1]] = w
		n.mux.Unlock()
	}
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			for _, s := range subs {
				if done := n.leave(s, w); done != nil {
					n.awaitLeft(s.Channel(), done)
				}
			}
			if w.turns != nil {
				n.mux.Lock()
				if n.own[chans[1]] == w {
					delete(n.own, chans[1])
				}
				n.mux.Unlock()
			}
			n.gone(lk, w)
		})
	}
	// A failed subscription leaves the caller with its token, which it
	// goes on using: nothing of it is released as a waiter's that left
	// (see gone and leftWaiter), as if an Acquire had returned it.
	fail := func() {
		n.mux.Lock()
		w.held = true
		n.mux.Unlock()
		cancel()
	}
	if len(fresh) > 0 {
		n.mux.Place(ctx, fresh) // every channel of lk has its slot
	}
	for i, r := range readies {
		select {
		case <-r.Done():
			if err := r.Err(); err != nil {
				fail()
				return nil, n.subscribeError(key, subs[i].Channel(), err)
			}
		case <-ctx.Done():
			fail()
			return nil, fmt.Errorf("redisdriver: subscribe %q: %w", key, ctx.Err())
		}
	}
	return cancel, nil
}

// subscribeError gives a failed subscription of ch its meaning.
func (n *notifier) subscribeError(key, ch string, err error) error {
	var pe *ChannelPermissionError
	if errors.As(err, &pe) {
		return fmt.Errorf("redisdriver: subscribe %q: %w", key, err)
	}
	if redis.IsPermissionError(err) {
		return fmt.Errorf("redisdriver: subscribe %q: %w", key,
			&ChannelPermissionError{Channel: ch, Pattern: n.d.channelPattern(), Err: err})
	}
	return n.d.wrap("subscribe", key, err)
}

// Message implements pubsub.Hooks. It delivers a release notification: a
// wake-up (an empty payload) to every waiter of its channel, or a grant
// to the waiter whose own channel it is, also while that waiter is
// leaving (see leftWaiter). A wake-up for a waiter no longer known is
// passed on (passOn). No grant is released here: every grant reaches its
// waiter's channel, and the caller releases what it does not keep (see
// driver.Handoff).
func (n *notifier) Message(c *pubsub.Conn, s *pubsub.Sub, ch, payload string) (after func()) {
	turn, granted := parseGrant(payload)
	l, leaving := n.left[ch]
	leaving = leaving && l.conn == c
	switch {
	case s != nil && granted:
		grantTo(s, turn)
	case s != nil:
		wakeAll(s)
	case leaving && granted:
		l.w.grant(turn)
	case leaving:
		l.w.Wake()
	case !granted:
		// The server sends nothing to a channel after it confirmed the
		// UNSUBSCRIBE, and grants only to waiters that listen: a
		// wake-up of a channel since moved, whose waiter is gone.
		if lk, ok := lockKeyOfWaiter(ch); ok {
			return func() { n.passOn(lk) }
		}
	}
	return nil
}

// wakeAll wakes every waiter of s; the Mux is locked.
func wakeAll(s *pubsub.Sub) {
	for w := range s.Members() {
		w.Wake()
	}
}

// Unsubscribed implements pubsub.Hooks: a handoff waiter leaving ch on c
// is told that no grant of it follows (see leftWaiter).
func (n *notifier) Unsubscribed(c *pubsub.Conn, ch string) {
	if l, ok := n.left[ch]; ok && l.conn == c {
		delete(n.left, ch) // no grant of it follows
		l.endLocked(true)
	}
}

// Reset implements pubsub.Hooks: the handoff waiters leaving on c are
// left unsure, as a grant to them may be lost with the connection.
func (n *notifier) Reset(c *pubsub.Conn) {
	for ch, l := range n.left {
		if l.conn == c {
			delete(n.left, ch) // nothing more comes from the old connection
			l.endLocked(false) // a grant may be lost
		}
	}
}

// PermissionError implements pubsub.Hooks.
func (n *notifier) PermissionError(ch string, err error) error {
	return &ChannelPermissionError{Channel: ch, Pattern: n.d.channelPattern(), Err: err}
}

// Closing implements pubsub.Hooks: it ends the waits of the handoff
// waiters that are leaving, and returns the release of the tokens of
// those that gave up unsure (see releaseUnknown), to run before the
// client closes.
func (n *notifier) Closing() (after func()) {
	unknown := make(map[string]string) // lock key by token
	for ch, l := range n.left {
		if lk, ok := lockKeyOfWaiter(ch); ok && !l.w.held {
			unknown[l.w.token] = lk
		}
	}
	for ch, l := range n.left {
		delete(n.left, ch)
		l.endLocked(false)
	}
	return func() { n.releaseUnknown(unknown) }
}

// close releases the tokens of the handoff waiters that gave up unsure
// (see releaseUnknown), ends every connection and waits for the
// goroutines.
func (n *notifier) close() { n.mux.Close() }
