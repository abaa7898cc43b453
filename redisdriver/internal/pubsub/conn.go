package pubsub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/redis/go-redis/v9"
)

// healthInterval is how long the pub/sub reader waits for a message before
// it pings the server; a ping still unanswered after another interval
// means a dead connection, which is then replaced.
const healthInterval = 15 * time.Second

// Conn is one pub/sub connection and its subscriptions. Its
// *redis.PubSub is replaced as a whole when the connection breaks, so
// that the replies on each connection can be matched with the commands
// sent on it: go-redis's own reconnection would resubscribe behind the
// Mux's back.
type Conn struct {
	addr    string
	sharded bool
	newPS   func() *redis.PubSub

	// sendMu orders commands on the wire as the state below changes,
	// so that a quick unsubscribe-resubscribe of a channel cannot leave
	// it unsubscribed. Taken before Mux.mu.
	sendMu sync.Mutex

	// replies counts what the reader received (see watchLocked).
	replies atomic.Uint64

	// Guarded by Mux.mu.
	ps    *redis.PubSub
	sent  []*command      // commands on ps whose replies are due, in order
	chans map[string]*Sub // subscribed or being subscribed on ps
	dead  bool            // dropped: its reader ended
}

// command is a command sent on a pub/sub connection whose replies are
// due: Redis answers commands in order, a (un)subscription with one reply
// per channel, a refusal with one error.
type command struct {
	kind  string   // "subscribe", "unsubscribe" or "ping"
	left  []string // channels still to be answered (few: one or two)
	buf   [2]string
	timer *time.Timer // see watchLocked; guarded by Mux.mu
}

// stop stops cmd's watch, as it is answered or no longer due.
func (cmd *command) stop() {
	if cmd.timer != nil {
		cmd.timer.Stop()
	}
}

func newCommand(kind string, chans ...string) *command {
	c := &command{kind: kind}
	c.left = append(c.buf[:0], chans...)
	return c
}

// watchLocked closes ps, so that its reader replaces the connection, if
// cmd, sent on it, is still unanswered after confirmTimeout. A server
// answers SUBSCRIBE and PING at once; a connection that stays silent is
// dead (half-open: a NAT or firewall dropped it without a reset, a
// partition), and waiting on it would keep a subscriber until the idle
// ping found it dead after two health intervals. n.mu must be held.
//
// A connection that answers is not silent, however long cmd's own replies
// take (a SUBSCRIBE of every channel after a reconnect is answered one
// channel at a time): the watch then starts again.
func (n *Mux) watchLocked(c *Conn, ps *redis.PubSub, cmd *command) {
	if n.closed || !slices.Contains(c.sent, cmd) {
		return
	}
	seen := c.replies.Load()
	var check func()
	check = func() {
		n.mu.Lock()
		due := !n.closed && c.ps == ps && slices.Contains(c.sent, cmd)
		silent := due && c.replies.Load() == seen
		if due && !silent {
			seen = c.replies.Load()
			cmd.timer = time.AfterFunc(n.confirmTimeout, check)
		}
		n.mu.Unlock()
		if silent {
			ps.Close()
		}
	}
	cmd.timer = time.AfterFunc(n.confirmTimeout, check)
}

func (c *Conn) subscribe(ctx context.Context, ps *redis.PubSub, chans []string) error {
	return Subscribe(ctx, ps, c.sharded, chans)
}

// Subscribe sends SUBSCRIBE, or SSUBSCRIBE if sharded (on Cluster), of
// chans on ps.
func Subscribe(ctx context.Context, ps *redis.PubSub, sharded bool, chans []string) error {
	if sharded {
		return ps.SSubscribe(ctx, chans...)
	}
	return ps.Subscribe(ctx, chans...)
}

// conn returns the pub/sub connection for channel ch, made on first use.
func (n *Mux) conn(ctx context.Context, ch string) (*Conn, error) {
	addr := ""
	var newPS func() *redis.PubSub
	if cl := n.cluster; cl != nil {
		node, err := n.masterFor(ctx, ch)
		if err != nil {
			return nil, err
		}
		addr = node.Options().Addr
		newPS = func() *redis.PubSub { return node.Subscribe(n.ctx) }
	} else {
		newPS = func() *redis.PubSub { return n.client.Subscribe(n.ctx) }
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, fmt.Errorf("redisdriver: %w", driver.ErrClosed)
	}
	if c := n.conns[addr]; c != nil {
		return c, nil
	}
	c := &Conn{
		addr: addr, sharded: n.cluster != nil, newPS: newPS, ps: newPS(),
		chans: make(map[string]*Sub),
	}
	n.conns[addr] = c
	n.wg.Add(1)
	go n.read(c)
	if n.sentinels != nil && !n.watching {
		n.watching = true
		n.wg.Add(1)
		go n.watchSentinels(n.sentinels)
	}
	return c, nil
}

// read is the reader goroutine of one connection. It replaces the
// connection when it breaks, and ends when it is dropped or at close.
func (n *Mux) read(c *Conn) {
	defer n.wg.Done()
	var backoff time.Duration
	for {
		n.mu.Lock()
		ps := c.ps
		n.mu.Unlock()
		msg, err := ps.ReceiveTimeout(n.ctx, healthInterval)
		if n.ctx.Err() != nil {
			return
		}
		if err == nil || isRedisError(err) {
			c.replies.Add(1)
		}
		switch {
		case err == nil:
			backoff = 0
			n.handle(c, msg)
			continue
		case isRedisError(err):
			n.refused(c, err)
			continue
		case isTimeout(err) && n.ping(c, ps):
			continue
		}
		n.mu.Lock()
		dead := c.dead
		n.mu.Unlock()
		if dead {
			return
		}
		// Broken, closed after a failed send, or silent after a ping:
		// start again, pausing if it keeps failing.
		if backoff > 0 {
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
		backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
		if !n.reset(c, ps) {
			return
		}
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// ping checks an idle connection: it sends PING, and reports false if the
// last PING is still unanswered (the connection is dead).
func (n *Mux) ping(c *Conn, ps *redis.PubSub) bool {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	n.mu.Lock()
	for _, cmd := range c.sent {
		if cmd.kind == "ping" {
			n.mu.Unlock()
			return false
		}
	}
	cmd := newCommand("ping")
	c.sent = append(c.sent, cmd)
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(n.ctx, time.Second)
	defer cancel()
	if ps.Ping(ctx) != nil {
		return false
	}
	n.mu.Lock()
	n.watchLocked(c, ps, cmd)
	n.mu.Unlock()
	return true
}

// handle processes one message of c.
func (n *Mux) handle(c *Conn, msg any) {
	switch m := msg.(type) {
	case *redis.Message:
		n.message(c, m)
	case *redis.Pong:
		n.mu.Lock()
		c.answered("ping", "")
		n.mu.Unlock()
	case *redis.Subscription:
		n.mu.Lock()
		defer n.mu.Unlock()
		switch m.Kind {
		case "subscribe", "ssubscribe":
			cmd := c.answered("subscribe", m.Channel)
			s := c.chans[m.Channel]
			if cmd == nil || s == nil || s.cmd != cmd {
				return // an answer for a subscription since left
			}
			s.cmd, s.live, s.redirects = nil, true, 0
			s.ready.settle(nil)
			if s.wasLive {
				s.wake() // live again after a reconnect or a move
			}
			s.wasLive = true
		case "unsubscribe", "sunsubscribe":
			n.hooks.Unsubscribed(c, m.Channel)
			if c.answered("unsubscribe", m.Channel) != nil {
				return
			}
			// Not asked for: the server dropped the channel, as its
			// slot moved to another node. Subscribe it there.
			if s := c.chans[m.Channel]; s != nil {
				n.detach(s)
				n.moveLocked([]*Sub{s}, c.addr, "")
			}
			n.dropIfUnusedLocked(c)
		}
	}
}

// answered records the reply of kind for channel ch (none for a ping) and
// returns the command it answers, or nil if none was due. n.mu must be
// held.
func (c *Conn) answered(kind, ch string) *command {
	for i, cmd := range c.sent {
		if cmd.kind != kind {
			continue
		}
		j := -1
		if ch != "" {
			// Redis answers a command's channels in order, so the
			// first due is the common case, found without a scan (a
			// resubscription carries every channel of the connection:
			// a scan per reply would cost their number squared).
			if len(cmd.left) > 0 && cmd.left[0] == ch {
				j = 0
			} else if j = slices.Index(cmd.left, ch); j < 0 {
				continue
			}
		}
		if j == 0 {
			cmd.left = cmd.left[1:]
		} else if j > 0 {
			cmd.left = slices.Delete(cmd.left, j, j+1)
		}
		if len(cmd.left) == 0 {
			c.sent = append(c.sent[:i:i], c.sent[i+1:]...)
			cmd.stop()
		}
		return cmd
	}
	return nil
}

// refused handles an error reply, which answers the oldest command due.
func (n *Mux) refused(c *Conn, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(c.sent) == 0 {
		return
	}
	cmd := c.sent[0]
	c.sent = c.sent[1:]
	cmd.stop()
	if cmd.kind != "subscribe" {
		return
	}
	var move []*Sub
	for _, ch := range cmd.left {
		s := c.chans[ch]
		if s == nil || s.cmd != cmd {
			continue
		}
		_, moved := redis.IsMovedError(err)
		_, ask := redis.IsAskError(err)
		switch {
		case (moved || ask) && n.cluster != nil && s.redirects < maxRedirects:
			s.redirects++
			n.detach(s)
			move = append(move, s)
		case redis.IsPermissionError(err):
			n.failLocked(s, n.hooks.PermissionError(ch, err))
		default:
			n.failLocked(s, err)
		}
	}
	if len(move) > 0 {
		addr, _ := redis.IsMovedError(err)
		if a, ok := redis.IsAskError(err); ok {
			addr = a
		}
		n.moveLocked(move, c.addr, addr)
		n.dropIfUnusedLocked(c)
	}
}

// reset replaces the broken connection ps of c: it subscribes its
// channels again on a new one, or, on Cluster, on their new owner's. It
// reports false, dropping c, when c has nothing left to carry.
func (n *Mux) reset(c *Conn, ps *redis.PubSub) bool {
	ps.Close()
	owners := n.owners(c)
	c.sendMu.Lock()
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		c.sendMu.Unlock()
		return false
	}
	for _, cmd := range c.sent {
		cmd.stop()
	}
	c.sent = nil
	n.hooks.Reset(c) // nothing more comes from the old connection
	var move, again []*Sub
	for ch, s := range c.chans {
		n.detach(s)
		if owner, ok := owners[ch]; ok && owner != c.addr {
			move = append(move, s)
		} else {
			again = append(again, s)
		}
	}
	if len(again) == 0 {
		c.dead = true
		if n.conns[c.addr] == c {
			delete(n.conns, c.addr)
		}
		for _, s := range move {
			n.moveLocked([]*Sub{s}, c.addr, "")
		}
		n.mu.Unlock()
		c.sendMu.Unlock()
		return false
	}
	c.ps = c.newPS()
	for _, s := range move {
		n.moveLocked([]*Sub{s}, c.addr, "")
	}
	n.mu.Unlock()
	c.sendMu.Unlock()
	n.sendSubscribe(c, again, true)
	return true
}

func isRedisError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}
