package pubsub

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/redis/go-redis/v9"
)

// Mux multiplexes the subscriptions of many members over shared pub/sub
// connections: one in all for a standalone or Sentinel client, one per
// master node on Cluster, where messages are published with SPUBLISH on
// the node owning the channel and a connection can only subscribe to
// shard channels of its own node. Subscriptions are reference-counted per
// channel: the first member of a channel subscribes, the last one
// unsubscribes.
//
// A subscription always ends in one of two states, soon: live (the
// server confirmed it) or failed with the server's error. It follows the
// data: when its connection breaks, its slot moves or its master fails
// over, it is subscribed again on the channel's current owner, and its
// members are woken once it is live again, as a message may have been
// missed meanwhile.
//
// Each connection has one reader goroutine, which alone replaces a broken
// connection; every goroutine ends at Close. A Mux is safe for concurrent
// use.
type Mux struct {
	client  redis.UniversalClient
	cluster *redis.ClusterClient // client as a Cluster client, or nil
	hooks   Hooks
	ctx     context.Context // ends at close
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// confirmTimeout is how long a command on a pub/sub connection may
	// stay unanswered before the connection counts as dead (see
	// watchLocked): the client's read timeout.
	confirmTimeout time.Duration

	// mu guards the Mux, its connections' and subscriptions' state, and
	// what its users guard with Lock (see Hooks).
	mu     sync.Mutex
	subs   map[string]*Sub  // by channel
	conns  map[string]*Conn // by node address; "" without Cluster
	closed bool

	// sentinels, set by FollowSentinels before any use, are watched for
	// master switches once the first pub/sub connection exists (see
	// watchSentinels); sentinelPS is the watch's connection.
	sentinels  *redis.FailoverOptions
	watching   bool
	sentinelPS *redis.PubSub
}

// Member is a subscriber of channels. Its methods run with the Mux
// locked.
type Member interface {
	// Wake wakes the member: a subscription of it is live again after a
	// reconnect or a move, or failed; a message may have been missed.
	Wake()
	// Cut tells the member that a channel of it was taken off its
	// connection (the connection broke, its slot moved, it failed): a
	// message on it may have been lost.
	Cut()
}

// Hooks are the user's part in a Mux: what messages mean, and what it
// keeps by connection. Each runs with the Mux locked, which guards what
// the user keeps with it too (see Lock).
type Hooks interface {
	// Message handles a message on channel ch of c; s is the
	// subscription of ch on c, or nil if c no longer carries one. It
	// returns what to run once the Mux is unlocked, or nil.
	Message(c *Conn, s *Sub, ch, payload string) (after func())
	// Unsubscribed tells that the server confirmed the unsubscription
	// of ch on c: nothing more comes to ch on c.
	Unsubscribed(c *Conn, ch string)
	// Reset tells that c's connection broke: nothing more comes from it,
	// its replies included.
	Reset(c *Conn)
	// PermissionError returns the error that a subscription of ch
	// refused by the server (NOPERM, err) fails with.
	PermissionError(ch string, err error) error
	// Closing runs at Close, after the Mux refuses new work and before
	// its subscriptions fail; what it returns runs once the Mux is
	// unlocked, before its connections close.
	Closing() (after func())
}

// New returns a Mux over client, which may be a standalone, Sentinel
// (failover) or Cluster client. It does no I/O.
func New(client redis.UniversalClient, hooks Hooks) *Mux {
	ctx, cancel := context.WithCancel(context.Background())
	n := &Mux{client: client, hooks: hooks, ctx: ctx, cancel: cancel,
		confirmTimeout: readTimeout(client),
		subs:           make(map[string]*Sub), conns: make(map[string]*Conn)}
	n.cluster, _ = client.(*redis.ClusterClient)
	return n
}

// FollowSentinels makes n follow the master switches that the Sentinels
// of fo announce (see watchSentinels); before any other use of n.
func (n *Mux) FollowSentinels(fo *redis.FailoverOptions) { n.sentinels = fo }

// Lock locks n: its users guard the state that its Hooks and Members
// touch with it.
func (n *Mux) Lock() { n.mu.Lock() }

// Unlock unlocks n.
func (n *Mux) Unlock() { n.mu.Unlock() }

// ClosedLocked reports whether n is closed; n must be locked.
func (n *Mux) ClosedLocked() bool { return n.closed }

// Context returns a context that ends at Close.
func (n *Mux) Context() context.Context { return n.ctx }

// ConfirmTimeout is how long a command on a pub/sub connection may stay
// unanswered before the connection counts as dead: the client's read
// timeout.
func (n *Mux) ConfirmTimeout() time.Duration { return n.confirmTimeout }

// GoLocked runs f on a goroutine that Close waits for, with a context that
// ends at Close, unless n is closed; n must be locked.
func (n *Mux) GoLocked(f func(ctx context.Context)) {
	if n.closed {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f(n.ctx)
	}()
}

// Break closes c's connection, whose server stays silent, so that its
// reader replaces it.
func (n *Mux) Break(c *Conn) {
	c.sendMu.Lock()
	n.mu.Lock()
	ps := c.ps
	n.mu.Unlock()
	c.sendMu.Unlock()
	ps.Close()
}

// readTimeout returns the read timeout of client's connections, or
// go-redis's default when it has none.
func readTimeout(client redis.UniversalClient) time.Duration {
	var t time.Duration
	switch c := client.(type) {
	case *redis.Client:
		t = c.Options().ReadTimeout
	case *redis.ClusterClient:
		t = c.Options().ReadTimeout
	}
	if t <= 0 {
		t = 5 * time.Second
	}
	return t
}

// Close fails every subscription, ends every connection and waits for
// the goroutines.
func (n *Mux) Close() {
	n.mu.Lock()
	n.closed = true
	after := n.hooks.Closing()
	conns := make([]*Conn, 0, len(n.conns))
	for _, c := range n.conns {
		conns = append(conns, c)
		for _, cmd := range c.sent {
			cmd.stop()
		}
	}
	for _, s := range n.subs {
		n.failLocked(s, fmt.Errorf("redisdriver: %w", driver.ErrClosed))
	}
	sentinelPS := n.sentinelPS
	n.mu.Unlock()
	if after != nil {
		after()
	}
	n.cancel()
	if sentinelPS != nil {
		sentinelPS.Close()
	}
	for _, c := range conns {
		n.mu.Lock()
		ps := c.ps
		n.mu.Unlock()
		ps.Close()
	}
	n.wg.Wait()
}

// message hands a message of c to the hooks.
func (n *Mux) message(c *Conn, m *redis.Message) {
	n.mu.Lock()
	after := n.hooks.Message(c, c.chans[m.Channel], m.Channel, m.Payload)
	n.mu.Unlock()
	if after != nil {
		after()
	}
}
