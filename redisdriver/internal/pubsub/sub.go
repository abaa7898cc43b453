package pubsub

import (
	"context"
	"iter"
	"maps"
	"slices"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/redis/go-redis/v9"
)

// Sub is the subscription of one channel, and its members. Guarded by
// Mux.mu.
type Sub struct {
	ch        string
	members   map[Member]struct{}
	conn      *Conn    // where it is subscribed or being subscribed; nil while it moves
	cmd       *command // its SUBSCRIBE not yet answered, or nil
	ready     *Readiness
	live      bool
	wasLive   bool // confirmed at least once: members may be waiting
	gone      bool // removed: the last member left, or it failed
	redirects int
}

// Readiness is what a subscriber waits for: done is closed when the
// subscription is live, or failed with err. A subscription that stops
// being live gets a new Readiness, so that a member joining then waits
// until it is live again.
type Readiness struct {
	done chan struct{}
	err  error // set before done is closed
}

func newReadiness() *Readiness { return &Readiness{done: make(chan struct{})} }

// settle ends the wait for r with err (nil: live).
func (r *Readiness) settle(err error) {
	r.err = err
	close(r.done)
}

// Join adds member w to the subscriptions of chans, making those that do
// not exist; it sets subs and readies (as long as chans) to them and to
// what to wait for on each, and appends the new ones, which the caller
// must place, to fresh.
func (n *Mux) Join(chans []string, w Member, subs []*Sub, readies []*Readiness, fresh []*Sub) ([]*Sub, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, driver.ErrClosed
	}
	for i, ch := range chans {
		s := n.subs[ch]
		if s == nil {
			s = &Sub{ch: ch, members: make(map[Member]struct{}), ready: newReadiness()}
			n.subs[ch] = s
			fresh = append(fresh, s)
		}
		s.members[w] = struct{}{}
		subs[i], readies[i] = s, s.ready
	}
	return fresh, nil
}

// Place subscribes ss, channels of one slot that are on no connection, on
// the connection of their owner. Failures fail them.
func (n *Mux) Place(ctx context.Context, ss []*Sub) {
	for {
		c, err := n.conn(ctx, ss[0].ch)
		if err != nil {
			n.fail(ss, err)
			return
		}
		if !n.sendSubscribe(c, ss, false) {
			return
		}
		// c was dropped meanwhile: take the owner's new connection.
	}
}

// sendSubscribe subscribes those of ss that still want it on c. It
// reports true if c was dropped before. If the connection fails, the
// reader replaces it and subscribes them again; only when that fails
// too (final) do they fail.
func (n *Mux) sendSubscribe(c *Conn, ss []*Sub, final bool) (retry bool) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	n.mu.Lock()
	if c.dead && !n.closed {
		n.mu.Unlock()
		return true
	}
	if n.closed {
		n.mu.Unlock()
		n.fail(ss, driver.ErrClosed)
		return false
	}
	cmd := newCommand("subscribe")
	for _, s := range ss {
		if s.gone || s.conn != nil {
			continue // left meanwhile, or placed by another
		}
		s.conn, s.cmd = c, cmd
		c.chans[s.ch] = s
		cmd.left = append(cmd.left, s.ch)
	}
	if len(cmd.left) == 0 {
		n.mu.Unlock()
		return false
	}
	c.sent = append(c.sent, cmd)
	ps := c.ps
	n.mu.Unlock()
	// Sent under the Mux's context, not the caller's: a write cut
	// short by one caller's deadline would leave the connection's replies
	// unknown and cost every member on it a reconnect. The caller's
	// context bounds only its own wait for Readiness.
	wctx, cancel := context.WithTimeout(n.ctx, n.confirmTimeout)
	err := c.subscribe(wctx, ps, slices.Clone(cmd.left))
	cancel()
	if err == nil {
		n.mu.Lock()
		n.watchLocked(c, ps, cmd)
		n.mu.Unlock()
		return false
	}
	// Whether the server got it is unknown: this connection is done for,
	// and its reader replaces it.
	ps.Close()
	if !final {
		return false
	}
	// The new connection failed too. New subscriptions fail now rather
	// than wait for a server that may be gone; those that were live stay,
	// to be subscribed again at the reader's next attempt, but whoever
	// waits for them now gets the error.
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range ss {
		if s.cmd != cmd {
			continue // not sent here, or answered or moved since
		}
		if !s.wasLive {
			n.failLocked(s, err)
		} else if !s.gone && !s.live {
			s.ready.settle(err)
			s.ready = newReadiness()
		}
	}
	return false
}

// fail ends ss with err: waiting subscribers get err, members of a live
// subscription are woken (they rely on expiry hints and backoff from
// then on), and the next Subscribe of the channel starts anew.
func (n *Mux) fail(ss []*Sub, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range ss {
		n.failLocked(s, err)
	}
}

func (n *Mux) failLocked(s *Sub, err error) {
	if s.gone {
		return
	}
	s.gone = true
	if n.subs[s.ch] == s {
		delete(n.subs, s.ch)
	}
	n.detach(s)
	s.ready.settle(err)
	s.wake()
}

// detach takes s off its connection; its members may have lost a
// message (see Member.Cut). n.mu must be held.
func (n *Mux) detach(s *Sub) {
	for w := range s.members {
		w.Cut()
	}
	if c := s.conn; c != nil && c.chans[s.ch] == s {
		delete(c.chans, s.ch)
	}
	s.conn, s.cmd = nil, nil
	if s.live {
		s.live = false
		s.ready = newReadiness()
	}
}

// Leave removes member w of s, and unsubscribes when it was the last.
// Then, if s was on a connection c, last (if not nil) runs with n locked:
// sent reports whether an UNSUBSCRIBE went out on c, whose confirmation
// comes to Hooks.Unsubscribed (unless c breaks first: Hooks.Reset).
func (n *Mux) Leave(s *Sub, w Member, last func(c *Conn, sent bool)) {
	for {
		n.mu.Lock()
		c := s.conn
		n.mu.Unlock()
		if c != nil {
			c.sendMu.Lock()
		}
		n.mu.Lock()
		if s.conn != c { // moved meanwhile
			n.mu.Unlock()
			if c != nil {
				c.sendMu.Unlock()
			}
			continue
		}
		delete(s.members, w)
		if len(s.members) > 0 || s.gone {
			n.mu.Unlock()
			if c != nil {
				c.sendMu.Unlock()
			}
			return
		}
		s.gone = true
		if n.subs[s.ch] == s {
			delete(n.subs, s.ch)
		}
		n.detach(s)
		var ps *redis.PubSub
		if c != nil && !c.dead && !n.closed {
			ps = c.ps
			c.sent = append(c.sent, newCommand("unsubscribe", s.ch))
		}
		if c != nil && last != nil {
			last(c, ps != nil)
		}
		n.mu.Unlock()
		if ps != nil {
			ctx, cancel := context.WithTimeout(n.ctx, time.Second)
			var err error
			if c.sharded {
				err = ps.SUnsubscribe(ctx, s.ch)
			} else {
				err = ps.Unsubscribe(ctx, s.ch)
			}
			cancel()
			if err != nil {
				ps.Close() // its reader replaces it
			}
		}
		if c != nil {
			c.sendMu.Unlock()
		}
		return
	}
}

func (s *Sub) wake() {
	for w := range s.members {
		w.Wake()
	}
}

// Channel returns the channel of s.
func (s *Sub) Channel() string { return s.ch }

// Members returns the members of s; the Mux must be locked.
func (s *Sub) Members() iter.Seq[Member] { return maps.Keys(s.members) }

// Done is closed when the subscription is live, or failed with Err.
func (r *Readiness) Done() <-chan struct{} { return r.done }

// Err returns why the subscription failed, nil if it is live; once Done
// is closed.
func (r *Readiness) Err() error { return r.err }
