package redisdriver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/redis/go-redis/v9"
)

// healthInterval is how long the pub/sub reader waits for a message before
// it pings the server, so that a dead connection is found and replaced.
const healthInterval = 15 * time.Second

// notifier multiplexes the release subscriptions of all waiters of one
// driver over one pub/sub connection: one in all for a standalone or
// Sentinel client, one per master node on Cluster, where releases are
// published with SPUBLISH on the node owning the key and a connection can
// only subscribe to shard channels of its own node. Subscriptions are
// reference-counted per channel: the first waiter of a key subscribes,
// the last one unsubscribes.
//
// Each connection has one reader goroutine, stopped by close.
type notifier struct {
	d      *locker
	ctx    context.Context // ends at close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[string]*psConn // by node address; "" without Cluster
	closed bool
}

// psConn is one pub/sub connection and its subscriptions.
type psConn struct {
	addr    string
	ps      *redis.PubSub
	sharded bool

	// sendMu orders SUBSCRIBE and UNSUBSCRIBE on the wire as the state
	// below changes, so a quick unsubscribe-resubscribe of a key cannot
	// leave it unsubscribed.
	sendMu sync.Mutex

	// Guarded by notifier.mu.
	subs    map[string]*channelSubs
	pending map[string]int // SUBSCRIBEs sent and not yet confirmed
	dead    bool
}

// channelSubs are the waiters of one channel.
type channelSubs struct {
	waiters   map[chan struct{}]struct{}
	ready     chan struct{} // closed once confirmed, or failed (err set)
	confirmed bool
	err       error
}

func newNotifier(d *locker) *notifier {
	ctx, cancel := context.WithCancel(context.Background())
	return &notifier{d: d, ctx: ctx, cancel: cancel, conns: make(map[string]*psConn)}
}

// Subscribe implements driver.Notifier. It returns once Redis has confirmed
// the subscription, so a release published after it returns is seen. With
// a token, it also listens on the waiter's own channel, where
// releaseScript wakes the first queued waiter alone.
func (d *locker) Subscribe(ctx context.Context, key, token string) (<-chan struct{}, func(), error) {
	if err := d.check(); err != nil {
		return nil, nil, err
	}
	lk := d.lockKey(key)
	chans := []string{channelOf(lk)}
	if token != "" {
		chans = append(chans, waiterChannel(lk, waiterTag(token)))
	}
	c, err := d.notify.conn(ctx, chans[0]) // every channel of lk has its slot
	if err != nil {
		return nil, nil, d.wrap("subscribe", key, err)
	}
	n := d.notify
	w := make(chan struct{}, 1)

	c.sendMu.Lock()
	n.mu.Lock()
	if c.dead || n.closed {
		n.mu.Unlock()
		c.sendMu.Unlock()
		return nil, nil, fmt.Errorf("redisdriver: subscribe %q: %w", key, dlock.ErrClosed)
	}
	subs := make([]*channelSubs, len(chans))
	var send []string // channels this waiter is the first of
	for i, ch := range chans {
		s := c.subs[ch]
		if s == nil {
			s = &channelSubs{waiters: make(map[chan struct{}]struct{}), ready: make(chan struct{})}
			c.subs[ch] = s
			c.pending[ch]++
			send = append(send, ch)
		}
		s.waiters[w] = struct{}{}
		subs[i] = s
	}
	n.mu.Unlock()
	if len(send) > 0 {
		var err error
		if c.sharded {
			err = c.ps.SSubscribe(ctx, send...)
		} else {
			err = c.ps.Subscribe(ctx, send...)
		}
		if err != nil {
			n.mu.Lock()
			for _, ch := range send {
				s := c.subs[ch]
				c.pending[ch]--
				delete(c.subs, ch)
				if !s.confirmed && s.err == nil {
					s.err = err
					close(s.ready)
				}
			}
			n.mu.Unlock()
			c.unsubscribe(send...) // go-redis remembers the channels even on failure
		}
	}
	c.sendMu.Unlock()

	var once sync.Once
	cancel := func() {
		once.Do(func() {
			for i, ch := range chans {
				n.leave(c, ch, subs[i], w)
			}
			if token != "" && len(w) > 0 {
				// Woken, maybe for its turn, and gone without trying.
				n.passOn(lk)
			}
		})
	}
	for _, s := range subs {
		select {
		case <-s.ready:
			if s.err != nil {
				cancel()
				return nil, nil, d.wrap("subscribe", key, s.err)
			}
		case <-ctx.Done():
			cancel()
			return nil, nil, fmt.Errorf("redisdriver: subscribe %q: %w", key, ctx.Err())
		}
	}
	return w, cancel, nil
}

// conn returns the pub/sub connection for channel ch, made on first use.
func (n *notifier) conn(ctx context.Context, ch string) (*psConn, error) {
	addr := ""
	var newPS func() *redis.PubSub
	if cl := n.d.cluster; cl != nil {
		node, err := cl.MasterForKey(ctx, ch)
		if err != nil {
			return nil, err
		}
		addr = node.Options().Addr
		newPS = func() *redis.PubSub { return node.Subscribe(n.ctx) }
	} else {
		newPS = func() *redis.PubSub { return n.d.client.Subscribe(n.ctx) }
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, fmt.Errorf("redisdriver: %w", dlock.ErrClosed)
	}
	if c := n.conns[addr]; c != nil {
		return c, nil
	}
	c := &psConn{
		addr: addr, ps: newPS(), sharded: n.d.cluster != nil,
		subs: make(map[string]*channelSubs), pending: make(map[string]int),
	}
	n.conns[addr] = c
	n.wg.Add(1)
	go n.read(c)
	return c, nil
}

// leave removes waiter w of channel ch, and unsubscribes when it was the
// last.
func (n *notifier) leave(c *psConn, ch string, s *channelSubs, w chan struct{}) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	n.mu.Lock()
	delete(s.waiters, w)
	last := len(s.waiters) == 0 && c.subs[ch] == s
	if last {
		delete(c.subs, ch)
	}
	stop := n.closed || c.dead
	n.mu.Unlock()
	if last && !stop {
		c.unsubscribe(ch)
	}
}

func (c *psConn) unsubscribe(chans ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if c.sharded {
		c.ps.SUnsubscribe(ctx, chans...)
	} else {
		c.ps.Unsubscribe(ctx, chans...)
	}
}

// read is the reader goroutine of one connection. go-redis reconnects a
// broken connection by itself and subscribes again to every channel; the
// new confirmations then wake the channels' waiters, since a release may
// have been missed meanwhile.
func (n *notifier) read(c *psConn) {
	defer n.wg.Done()
	backoff := 10 * time.Millisecond
	for {
		msg, err := c.ps.ReceiveTimeout(n.ctx, healthInterval)
		if err != nil {
			if errors.Is(err, redis.ErrClosed) || n.ctx.Err() != nil {
				n.drop(c)
				return
			}
			var t interface{ Timeout() bool }
			if errors.As(err, &t) && t.Timeout() {
				ctx, cancel := context.WithTimeout(n.ctx, time.Second)
				c.ps.Ping(ctx)
				cancel()
				continue
			}
			select {
			case <-n.ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Message:
			n.mu.Lock()
			s := c.subs[m.Channel]
			if s != nil {
				s.wake()
			}
			n.mu.Unlock()
			if lk, ok := lockKeyOfWaiter(m.Channel); ok && s == nil {
				// The turn of a waiter that has just left.
				n.passOn(lk)
			}
		case *redis.Subscription:
			n.mu.Lock()
			switch m.Kind {
			case "subscribe", "ssubscribe":
				if c.pending[m.Channel] > 0 {
					c.pending[m.Channel]--
				}
				if s := c.subs[m.Channel]; s != nil {
					switch {
					case s.confirmed:
						s.wake() // subscribed again after a reconnect
					case c.pending[m.Channel] == 0:
						s.confirmed = true
						close(s.ready)
					}
				}
			case "sunsubscribe":
				// The server dropped the channel (its slot moved):
				// let the waiters try again at once.
				if s := c.subs[m.Channel]; s != nil {
					s.wake()
				}
			}
			if c.pending[m.Channel] == 0 {
				delete(c.pending, m.Channel)
			}
			n.mu.Unlock()
		}
	}
}

// passOn runs wakeScript for lk in the background, for a waiter woken
// for its turn after it stopped waiting, so that the release that woke it
// still wakes someone.
func (n *notifier) passOn(lk string) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, passOnTimeout)
		defer cancel()
		wakeScript.Run(ctx, n.d.client, []string{lk, queueKey(lk)}, "", n.d.publish)
	}()
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

func (s *channelSubs) wake() {
	for w := range s.waiters {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// drop forgets a connection whose reader ended, failing the subscriptions
// still waiting for confirmation and waking the others, which then rely on
// expiry hints and backoff.
func (n *notifier) drop(c *psConn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c.dead = true
	if n.conns[c.addr] == c {
		delete(n.conns, c.addr)
	}
	for _, s := range c.subs {
		if !s.confirmed && s.err == nil {
			s.err = fmt.Errorf("redisdriver: pub/sub connection closed: %w", dlock.ErrClosed)
			close(s.ready)
		}
		s.wake()
	}
}

// close ends every connection and waits for the readers.
func (n *notifier) close() {
	n.mu.Lock()
	n.closed = true
	conns := make([]*psConn, 0, len(n.conns))
	for _, c := range n.conns {
		conns = append(conns, c)
	}
	n.mu.Unlock()
	n.cancel()
	for _, c := range conns {
		c.ps.Close()
	}
	n.wg.Wait()
}
