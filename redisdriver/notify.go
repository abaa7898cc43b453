package redisdriver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
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

// maxRedirects bounds how often one subscription follows MOVED or ASK in
// a row before it fails: a slot map that keeps disagreeing with the
// servers must not keep a subscriber waiting.
const maxRedirects = 8

// placeTimeout bounds the subscribing of channels that move (after MOVED,
// a slot move or a failover), which no caller's context bounds.
const placeTimeout = 10 * time.Second

// notifier multiplexes the release subscriptions of all waiters of one
// driver over shared pub/sub connections: one in all for a standalone or
// Sentinel client, one per master node on Cluster, where releases are
// published with SPUBLISH on the node owning the key and a connection can
// only subscribe to shard channels of its own node. Subscriptions are
// reference-counted per channel: the first waiter of a key subscribes,
// the last one unsubscribes.
//
// A subscription always ends in one of two states, soon: live (the
// server confirmed it) or failed with the server's error. It follows the
// data: when its connection breaks, its slot moves or its master fails
// over, it is subscribed again on the key's current owner, and its
// waiters are woken once it is live again, as a release may have been
// missed meanwhile.
//
// Each connection has one reader goroutine, which alone replaces a broken
// connection; every goroutine ends at close.
type notifier struct {
	d      *locker
	ctx    context.Context // ends at close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// scope ends the names of the key-wide release channels (see
	// releasedChannel).
	scope string

	// confirmTimeout is how long a command on a pub/sub connection may
	// stay unanswered before the connection counts as dead (see
	// watchLocked): the client's read timeout.
	confirmTimeout time.Duration

	mu    sync.Mutex
	subs  map[string]*channelSubs // by channel
	conns map[string]*psConn      // by node address; "" without Cluster
	left  map[string]leftWaiter   // by channel: see leftWaiter
	// own holds the handoff waiters by their own channel, from
	// subscribe to cancel, whatever becomes of their subscriptions
	// meanwhile, so that acquired finds them.
	own    map[string]*waiter
	closed bool

	// sentinels, set by Open for a Sentinel URL before any use, are
	// watched for master switches once the first pub/sub connection
	// exists (see watchSentinels); sentinelPS is the watch's connection.
	sentinels  *redis.FailoverOptions
	watching   bool
	sentinelPS *redis.PubSub
}

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
	conn *psConn
	done chan struct{}
}

// endLocked ends the wait of l; confirmed reports the server's UNSUBSCRIBE
// reply. n.mu must be held, and l removed from n.left.
func (l leftWaiter) endLocked(confirmed bool) {
	if !confirmed {
		l.w.unsure = true
	}
	close(l.done)
}

// psConn is one pub/sub connection and its subscriptions. Its
// *redis.PubSub is replaced as a whole when the connection breaks, so
// that the replies on each connection can be matched with the commands
// sent on it: go-redis's own reconnection would resubscribe behind the
// notifier's back.
type psConn struct {
	addr    string
	sharded bool
	newPS   func() *redis.PubSub

	// sendMu orders commands on the wire as the state below changes,
	// so that a quick unsubscribe-resubscribe of a channel cannot leave
	// it unsubscribed. Taken before notifier.mu.
	sendMu sync.Mutex

	// replies counts what the reader received (see watchLocked).
	replies atomic.Uint64

	// Guarded by notifier.mu.
	ps    *redis.PubSub
	sent  []*command              // commands on ps whose replies are due, in order
	chans map[string]*channelSubs // subscribed or being subscribed on ps
	dead  bool                    // dropped: its reader ended
}

// command is a command sent on a pub/sub connection whose replies are
// due: Redis answers commands in order, a (un)subscription with one reply
// per channel, a refusal with one error.
type command struct {
	kind  string   // "subscribe", "unsubscribe" or "ping"
	left  []string // channels still to be answered (few: one or two)
	buf   [2]string
	timer *time.Timer // see watchLocked; guarded by notifier.mu
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

// waiter is one subscription: Subscribe's channel of wake-ups, or
// SubscribeHandoff's channel of turns. Its channel has one sender, the
// notifier, under notifier.mu.
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

// wake wakes w, unless a wake-up (or a grant) is already waiting.
func (w *waiter) wake() {
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

// grant delivers t, a grant, to a handoff waiter, in place of a plain
// wake-up still unread: a grant is never dropped. It reports false if w
// takes no grants, or (which the scripts never cause: one grant per
// token at a time) already holds one unread.
func (w *waiter) grant(t driver.Turn) bool {
	if w.turns == nil {
		return false
	}
	select {
	case w.turns <- t:
		w.granted = true
		return true
	case old := <-w.turns:
		if old.Granted {
			w.turns <- old // room: only the notifier sends, under its lock
			return false
		}
	}
	w.turns <- t // room, as above
	w.granted = true
	return true
}

// channelSubs are the waiters of one channel. Guarded by notifier.mu.
type channelSubs struct {
	ch        string
	waiters   map[*waiter]struct{}
	conn      *psConn  // where it is subscribed or being subscribed; nil while it moves
	cmd       *command // its SUBSCRIBE not yet answered, or nil
	ready     *readiness
	live      bool
	wasLive   bool // confirmed at least once: waiters may be waiting
	gone      bool // removed: the last waiter left, or it failed
	redirects int
}

// readiness is what a subscriber waits for: done is closed when the
// subscription is live, or failed with err. A subscription that stops
// being live gets a new readiness, so that a waiter joining then waits
// until it is live again.
type readiness struct {
	done chan struct{}
	err  error // set before done is closed
}

func newReadiness() *readiness { return &readiness{done: make(chan struct{})} }

// settle ends the wait for r with err (nil: live).
func (r *readiness) settle(err error) {
	r.err = err
	close(r.done)
}

func newNotifier(d *locker) *notifier {
	ctx, cancel := context.WithCancel(context.Background())
	return &notifier{d: d, ctx: ctx, cancel: cancel, scope: channelScope(d.client),
		confirmTimeout: readTimeout(d.client),
		subs:           make(map[string]*channelSubs), conns: make(map[string]*psConn),
		left: make(map[string]leftWaiter), own: make(map[string]*waiter)}
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
func (n *notifier) watchLocked(c *psConn, ps *redis.PubSub, cmd *command) {
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

// ChannelPermissionError reports that the Redis user may not use the
// pub/sub channels that release notifications need: the channel itself
// (Redis 7 gives new ACL users no channel permission), or the command
// (SUBSCRIBE, or PUBLISH from the release script). Pattern is the channel
// pattern to grant, as in "ACL SETUSER name &" + Pattern; its message
// names the command instead when the server refused the command.
type ChannelPermissionError struct {
	Channel string // the channel that was refused
	Pattern string // the channel pattern the user needs
	Err     error  // the server's error (NOPERM)
}

func (e *ChannelPermissionError) Error() string {
	if cmd := refusedCommand(e.Err); cmd != "" {
		return fmt.Sprintf("redisdriver: the Redis user may not run %s, which release notifications need: grant it +%s (ACL SETUSER <user> +%s): %v",
			strings.ToUpper(cmd), cmd, cmd, e.Err)
	}
	return fmt.Sprintf("redisdriver: the Redis user may not use channel %q: grant it the channel pattern %q (ACL SETUSER <user> &%s): %v",
		e.Channel, e.Pattern, e.Pattern, e.Err)
}

func (e *ChannelPermissionError) Unwrap() error { return e.Err }

// channelPattern is the ACL channel pattern that covers every channel of
// the driver.
func (d *locker) channelPattern() string { return d.cfg.prefix + "*" }

// checkChannels publishes to and subscribes to a channel of the driver, on
// a pub/sub connection of its own that it closes.
func (d *locker) checkChannels(ctx context.Context) error {
	ch := d.notify.releasedChannel(d.lockKey("open-check"))
	refused := func(err error) error {
		if redis.IsPermissionError(err) {
			return &ChannelPermissionError{Channel: ch, Pattern: d.channelPattern(), Err: err}
		}
		return d.wrap("check channels", "", err)
	}
	if err := d.client.Do(ctx, d.publish, ch, "").Err(); err != nil {
		return refused(err)
	}
	var ps *redis.PubSub
	if d.cluster != nil {
		node, err := d.cluster.MasterForKey(ctx, ch)
		if err != nil {
			return d.wrap("check channels", "", err)
		}
		ps = node.Subscribe(ctx)
	} else {
		ps = d.client.Subscribe(ctx)
	}
	defer ps.Close()
	c := psConn{sharded: d.cluster != nil}
	err := c.subscribe(ctx, ps, []string{ch})
	if err == nil {
		_, err = ps.Receive(ctx) // the confirmation, or the refusal
	}
	if err != nil {
		return refused(err)
	}
	return nil
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
	var readyBuf [2]*readiness
	var freshBuf [2]*channelSubs
	subs := make([]*channelSubs, len(chans))
	readies, fresh := readyBuf[:len(chans)], freshBuf[:0]
	fresh, err := n.join(chans, w, subs, readies, fresh)
	if err != nil {
		return nil, fmt.Errorf("redisdriver: subscribe %q: %w", key, err)
	}
	if w.turns != nil {
		n.mu.Lock()
		n.own[chans[1]] = w
		n.mu.Unlock()
	}
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			for _, s := range subs {
				if done := n.leave(s, w); done != nil {
					n.awaitLeft(s.ch, done)
				}
			}
			if w.turns != nil {
				n.mu.Lock()
				if n.own[chans[1]] == w {
					delete(n.own, chans[1])
				}
				n.mu.Unlock()
			}
			n.gone(lk, w)
		})
	}
	// A failed subscription leaves the caller with its token, which it
	// goes on using: nothing of it is released as a waiter's that left
	// (see gone and leftWaiter), as if an Acquire had returned it.
	fail := func() {
		n.mu.Lock()
		w.held = true
		n.mu.Unlock()
		cancel()
	}
	if len(fresh) > 0 {
		n.place(ctx, fresh) // every channel of lk has its slot
	}
	for i, r := range readies {
		select {
		case <-r.done:
			if r.err != nil {
				fail()
				return nil, n.subscribeError(key, subs[i].ch, r.err)
			}
		case <-ctx.Done():
			fail()
			return nil, fmt.Errorf("redisdriver: subscribe %q: %w", key, ctx.Err())
		}
	}
	return cancel, nil
}

// gone is the end of cancel, once w left every channel of lk and no
// longer receives anything. A plain waiter's wake-up, maybe for its turn,
// is passed on. A handoff waiter's turns stay in its channel, where the
// caller finds them: a grant it releases, a wake-up it passes on (see
// driver.Handoff).
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
	if w.token == "" {
		return
	}
	if w.plain != nil {
		if len(w.plain) > 0 {
			n.passOn(lk)
		}
		return
	}
	n.mu.Lock()
	turn := false
	if (w.cut || w.unsure) && !w.held && !w.granted {
		turn = len(w.turns) > 0
		w.grant(driver.Turn{Granted: true})
	}
	closed := n.closed
	n.mu.Unlock()
	if turn && !closed {
		ctx, cancel := context.WithTimeout(n.ctx, passOnTimeout)
		defer cancel()
		n.passOnNow(ctx, lk)
	}
}

// awaitLeft waits until the leaving of the waiter's own channel ch ends
// (done closed: see leftWaiter), or the server stays silent for the
// confirmation timeout: the connection is then closed (its reader replaces
// it) and the waiter left unsure.
func (n *notifier) awaitLeft(ch string, done <-chan struct{}) {
	timer := time.NewTimer(n.confirmTimeout)
	defer timer.Stop()
	select {
	case <-done:
		return
	case <-timer.C:
	}
	n.mu.Lock()
	l, ok := n.left[ch]
	if ok && l.done == done {
		delete(n.left, ch)
		l.endLocked(false)
	}
	n.mu.Unlock()
	if ok {
		l.conn.sendMu.Lock()
		n.mu.Lock()
		ps := l.conn.ps
		n.mu.Unlock()
		l.conn.sendMu.Unlock()
		ps.Close()
	}
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

// join adds waiter w to the subscriptions of chans, making those that do
// not exist; it sets subs and readies (as long as chans) to them and to
// what to wait for on each, and appends the new ones, which the caller
// must place, to fresh.
func (n *notifier) join(chans []string, w *waiter, subs []*channelSubs, readies []*readiness, fresh []*channelSubs) ([]*channelSubs, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, driver.ErrClosed
	}
	for i, ch := range chans {
		s := n.subs[ch]
		if s == nil {
			s = &channelSubs{ch: ch, waiters: make(map[*waiter]struct{}), ready: newReadiness()}
			n.subs[ch] = s
			fresh = append(fresh, s)
		}
		s.waiters[w] = struct{}{}
		subs[i], readies[i] = s, s.ready
	}
	return fresh, nil
}

// place subscribes ss, channels of one slot that are on no connection, on
// the connection of their owner. Failures fail them.
func (n *notifier) place(ctx context.Context, ss []*channelSubs) {
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
func (n *notifier) sendSubscribe(c *psConn, ss []*channelSubs, final bool) (retry bool) {
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
	// Sent under the notifier's context, not the caller's: a write cut
	// short by one caller's deadline would leave the connection's replies
	// unknown and cost every waiter on it a reconnect. The caller's
	// context bounds only its own wait for readiness.
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

func (c *psConn) subscribe(ctx context.Context, ps *redis.PubSub, chans []string) error {
	if c.sharded {
		return ps.SSubscribe(ctx, chans...)
	}
	return ps.Subscribe(ctx, chans...)
}

// fail ends ss with err: waiting subscribers get err, waiters of a live
// subscription are woken (they rely on expiry hints and backoff from
// then on), and the next Subscribe of the channel starts anew.
func (n *notifier) fail(ss []*channelSubs, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range ss {
		n.failLocked(s, err)
	}
}

func (n *notifier) failLocked(s *channelSubs, err error) {
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

// detach takes s off its connection; its waiters may have lost a
// message (see gone). n.mu must be held.
func (n *notifier) detach(s *channelSubs) {
	for w := range s.waiters {
		w.cut = true
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

// conn returns the pub/sub connection for channel ch, made on first use.
func (n *notifier) conn(ctx context.Context, ch string) (*psConn, error) {
	addr := ""
	var newPS func() *redis.PubSub
	if cl := n.d.cluster; cl != nil {
		node, err := n.masterFor(ctx, ch)
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
		return nil, fmt.Errorf("redisdriver: %w", driver.ErrClosed)
	}
	if c := n.conns[addr]; c != nil {
		return c, nil
	}
	c := &psConn{
		addr: addr, sharded: n.d.cluster != nil, newPS: newPS, ps: newPS(),
		chans: make(map[string]*channelSubs),
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

// masterFor returns the node that the Cluster slot map names master of
// ch's slot, once the node itself says it is a master (ROLE), asked only
// for a node the notifier has no connection to yet. A map that predates a
// failover names the old master, now a replica, which accepts shard
// subscriptions of its master's slots: its waiters would never be handed
// a key (a release asks the master whether they listen). The map is then
// reloaded and asked again, for a few tries (go-redis reloads in the
// background, with no event to wait for). A user that may not run ROLE
// gets the map's answer.
func (n *notifier) masterFor(ctx context.Context, ch string) (*redis.Client, error) {
	cl := n.d.cluster
	for try := 0; ; try++ {
		node, err := cl.MasterForKey(ctx, ch)
		if err != nil {
			return nil, err
		}
		n.mu.Lock()
		known := n.conns[node.Options().Addr] != nil
		n.mu.Unlock()
		if known {
			return node, nil
		}
		role, err := node.Do(ctx, "ROLE").Slice()
		if isRedisError(err) {
			// The user may not run ROLE (the least ACL rule does not
			// grant it): the map is all there is to go by.
			return node, nil
		}
		if err != nil {
			return nil, err
		}
		if len(role) > 0 && role[0] == "master" {
			return node, nil
		}
		if try == 50 {
			return nil, fmt.Errorf("redisdriver: the Cluster slot map names %s master of channel %q, which says it is a %v", node.Options().Addr, ch, role[0])
		}
		cl.ReloadState(ctx)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// watchSentinels follows the master switches that the Sentinels of fo
// announce (+switch-master), one Sentinel at a time, the next when one
// fails: at a switch it replaces every pub/sub connection at once, so that
// the waiters listen on the new master. go-redis moves its command
// connections at a switch, but not the notifier's: a connection to an old
// master that froze (paused, partitioned) stays open and silent, and only
// the idle ping would find it dead, after two health intervals, while
// every release on the new master finds no waiter listening.
func (n *notifier) watchSentinels(fo *redis.FailoverOptions) {
	defer n.wg.Done()
	var backoff time.Duration
	for i := 0; ; i++ {
		sc := redis.NewSentinelClient(&redis.Options{
			Addr: fo.SentinelAddrs[i%len(fo.SentinelAddrs)], Dialer: fo.Dialer,
			Username: fo.SentinelUsername, Password: fo.SentinelPassword, TLSConfig: fo.TLSConfig,
			DialTimeout: fo.DialTimeout, ReadTimeout: fo.ReadTimeout, WriteTimeout: fo.WriteTimeout,
		})
		ps := sc.Subscribe(n.ctx, "+switch-master")
		n.mu.Lock()
		closed := n.closed
		n.sentinelPS = ps
		n.mu.Unlock()
		if !closed {
			n.followSwitches(ps, fo.MasterName, &backoff)
		}
		ps.Close()
		sc.Close()
		if closed || n.ctx.Err() != nil {
			return
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
	}
}

// followSwitches reads ps, subscribed to a Sentinel's +switch-master,
// until it fails or stays silent for two health intervals, and replaces
// every pub/sub connection at each switch of master.
func (n *notifier) followSwitches(ps *redis.PubSub, master string, backoff *time.Duration) {
	silent := 0
	for {
		msg, err := ps.ReceiveTimeout(n.ctx, healthInterval)
		switch {
		case n.ctx.Err() != nil:
			return
		case err == nil:
			silent, *backoff = 0, 0
			if m, ok := msg.(*redis.Message); ok && strings.HasPrefix(m.Payload, master+" ") {
				n.reconnectAll()
			}
		case isTimeout(err) && silent == 0:
			silent++
			ctx, cancel := context.WithTimeout(n.ctx, time.Second)
			err = ps.Ping(ctx)
			cancel()
			if err != nil {
				return
			}
		default:
			return
		}
	}
}

// reconnectAll closes every pub/sub connection: each reader replaces its
// own, dialling the master the client finds now.
func (n *notifier) reconnectAll() {
	n.mu.Lock()
	pss := make([]*redis.PubSub, 0, len(n.conns))
	for _, c := range n.conns {
		pss = append(pss, c.ps)
	}
	n.mu.Unlock()
	for _, ps := range pss {
		ps.Close()
	}
}

// leave removes waiter w of s, and unsubscribes when it was the last. A
// handoff waiter's own channel is remembered until the UNSUBSCRIBE is
// answered (see leftWaiter): leave then returns the channel closed when
// that wait ends, for the caller to wait on.
func (n *notifier) leave(s *channelSubs, w *waiter) (done chan struct{}) {
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
		delete(s.waiters, w)
		if len(s.waiters) > 0 || s.gone {
			n.mu.Unlock()
			if c != nil {
				c.sendMu.Unlock()
			}
			return nil
		}
		s.gone = true
		if n.subs[s.ch] == s {
			delete(n.subs, s.ch)
		}
		n.detach(s)
		var ps *redis.PubSub
		// A waiter that knows of a hold of its token (a grant delivered,
		// an Acquire that returned the key) needs no wait: a grant
		// removes the token's queue entry, and so does the Acquire or
		// else the release of the hold, so no later release grants
		// the token anything; a grant of that same hold still on its
		// way is dropped.
		_, own := lockKeyOfWaiter(s.ch)
		own = own && w.turns != nil && !w.held && !w.granted
		if c != nil && !c.dead && !n.closed {
			ps = c.ps
			c.sent = append(c.sent, newCommand("unsubscribe", s.ch))
			if own {
				if l, ok := n.left[s.ch]; ok {
					delete(n.left, s.ch)
					l.endLocked(false)
				}
				done = make(chan struct{})
				n.left[s.ch] = leftWaiter{w: w, conn: c, done: done}
			}
		} else if own && c != nil {
			w.unsure = true // no UNSUBSCRIBE can be confirmed
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
		return done
	}
}

// read is the reader goroutine of one connection. It replaces the
// connection when it breaks, and ends when it is dropped or at close.
func (n *notifier) read(c *psConn) {
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
func (n *notifier) ping(c *psConn, ps *redis.PubSub) bool {
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
func (n *notifier) handle(c *psConn, msg any) {
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
			if l, ok := n.left[m.Channel]; ok && l.conn == c {
				delete(n.left, m.Channel) // no grant of it follows
				l.endLocked(true)
			}
			if c.answered("unsubscribe", m.Channel) != nil {
				return
			}
			// Not asked for: the server dropped the channel, as its
			// slot moved to another node. Subscribe it there.
			if s := c.chans[m.Channel]; s != nil {
				n.detach(s)
				n.moveLocked([]*channelSubs{s}, c.addr, "")
			}
			n.dropIfUnusedLocked(c)
		}
	}
}

// message delivers a release notification: a wake-up (an empty payload)
// to every waiter of its channel, or a grant to the waiter whose own
// channel it is, also while that waiter is leaving (see leftWaiter). A
// wake-up for a waiter no longer known is passed on (passOn); a grant
// nobody can take is released with its token (releaseGone).
func (n *notifier) message(c *psConn, m *redis.Message) {
	turn, granted := parseGrant(m.Payload)
	n.mu.Lock()
	s := c.chans[m.Channel]
	l, leaving := n.left[m.Channel]
	leaving = leaving && l.conn == c
	token, unknown := "", false // of a grant that nobody takes; a wake-up for nobody
	switch {
	case s != nil && granted:
		token = s.grant(turn)
	case s != nil:
		s.wake()
	case leaving && granted:
		if !l.w.grant(turn) {
			token = l.w.token
		}
	case leaving:
		l.w.wake()
	default:
		// The server sends nothing to a channel after it confirmed the
		// UNSUBSCRIBE, and grants only to waiters that listen: a
		// message of a channel since moved, whose waiter is gone.
		unknown = true
	}
	n.mu.Unlock()
	lk, ok := lockKeyOfWaiter(m.Channel)
	switch {
	case !ok:
	case token != "":
		n.releaseGone(lk, token)
	case unknown && !granted:
		n.passOn(lk)
	}
}

// acquired records that an Acquire with token, queued at lk for a handoff,
// returned the key: a grant to token that reaches the notifier after its
// waiter left is the hold that Acquire returned (see leftWaiter).
func (n *notifier) acquired(lk, token string) {
	ch := waiterChannel(lk, waiterTag(token))
	n.mu.Lock()
	defer n.mu.Unlock()
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

// grant delivers t, a grant on s, a waiter's own channel, to its handoff
// waiter. If none takes it, it wakes the waiters there and returns the
// token to release the grant with.
func (s *channelSubs) grant(t driver.Turn) (token string) {
	for w := range s.waiters {
		if w.grant(t) {
			return ""
		}
		token = w.token
	}
	s.wake()
	return token
}

// answered records the reply of kind for channel ch (none for a ping) and
// returns the command it answers, or nil if none was due. n.mu must be
// held.
func (c *psConn) answered(kind, ch string) *command {
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
func (n *notifier) refused(c *psConn, err error) {
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
	var move []*channelSubs
	for _, ch := range cmd.left {
		s := c.chans[ch]
		if s == nil || s.cmd != cmd {
			continue
		}
		_, moved := redis.IsMovedError(err)
		_, ask := redis.IsAskError(err)
		switch {
		case (moved || ask) && n.d.cluster != nil && s.redirects < maxRedirects:
			s.redirects++
			n.detach(s)
			move = append(move, s)
		case redis.IsPermissionError(err):
			n.failLocked(s, &ChannelPermissionError{Channel: ch, Pattern: n.d.channelPattern(), Err: err})
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

// dropIfUnusedLocked drops c once every channel moved away from it (its
// node lost its slots, or is no longer a master): its reader ends, and a
// later subscription there makes a new connection. n.mu must be held.
func (n *notifier) dropIfUnusedLocked(c *psConn) {
	if len(c.chans) > 0 || len(c.sent) > 0 || c.dead {
		return
	}
	c.dead = true
	if n.conns[c.addr] == c {
		delete(n.conns, c.addr)
	}
	c.ps.Close()
}

// moveLocked subscribes ss, taken off the connection to from, again on
// their owner, once the slot map says the owner is to (if known) or no
// longer from. It runs in the background, as it waits for the slot map.
// n.mu must be held.
func (n *notifier) moveLocked(ss []*channelSubs, from, to string) {
	if n.closed {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, placeTimeout)
		defer cancel()
		n.awaitSlotMap(ctx, ss[0].ch, from, to)
		for _, s := range ss {
			n.place(ctx, []*channelSubs{s})
		}
	}()
}

// awaitSlotMap asks go-redis to reload the Cluster slot map, and waits a
// little for it to name a new owner of ch: to, or any but from. go-redis
// reloads in the background, with no event to wait for; if the map stays
// stale, the subscription is refused with MOVED again, up to
// maxRedirects times.
func (n *notifier) awaitSlotMap(ctx context.Context, ch, from, to string) {
	cl := n.d.cluster
	if cl == nil {
		return
	}
	cl.ReloadState(ctx)
	for range 50 {
		node, err := cl.MasterForKey(ctx, ch)
		if err == nil {
			addr := node.Options().Addr
			if (to != "" && addr == to) || (to == "" && addr != from) {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// reset replaces the broken connection ps of c: it subscribes its
// channels again on a new one, or, on Cluster, on their new owner's. It
// reports false, dropping c, when c has nothing left to carry.
func (n *notifier) reset(c *psConn, ps *redis.PubSub) bool {
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
	for ch, l := range n.left {
		if l.conn == c {
			delete(n.left, ch) // nothing more comes from the old connection
			l.endLocked(false) // a grant may be lost
		}
	}
	var move, again []*channelSubs
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
			n.moveLocked([]*channelSubs{s}, c.addr, "")
		}
		n.mu.Unlock()
		c.sendMu.Unlock()
		return false
	}
	c.ps = c.newPS()
	for _, s := range move {
		n.moveLocked([]*channelSubs{s}, c.addr, "")
	}
	n.mu.Unlock()
	c.sendMu.Unlock()
	n.sendSubscribe(c, again, true)
	return true
}

// owners returns the current owner of each channel of c on Cluster, after
// asking for a fresh slot map (the connection may have broken because its
// node failed over); nil otherwise.
func (n *notifier) owners(c *psConn) map[string]string {
	cl := n.d.cluster
	if cl == nil {
		return nil
	}
	n.mu.Lock()
	chans := make([]string, 0, len(c.chans))
	for ch := range c.chans {
		chans = append(chans, ch)
	}
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(n.ctx, time.Second)
	defer cancel()
	cl.ReloadState(ctx)
	owners := make(map[string]string, len(chans))
	for _, ch := range chans {
		if node, err := cl.MasterForKey(ctx, ch); err == nil {
			owners[ch] = node.Options().Addr
		}
	}
	return owners
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
		n.passOnNow(ctx, lk)
	}()
}

// passOnNow runs wakeScript for lk: if the key is free, its next waiter is
// woken (or handed the key) as by a release.
func (n *notifier) passOnNow(ctx context.Context, lk string) {
	wakeScript.Run(ctx, n.d.client, []string{lk, fenceKey(lk), queueKey(lk), attemptsKey(lk)}, "", n.d.publish, n.scope)
}

// releaseGone releases, in the background, the grant of lk to token that
// reached a waiter after it left (see leftWaiter): the release hands the
// key on to the next waiter. If it fails, the grant runs out its TTL.
func (n *notifier) releaseGone(lk, token string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.releaseGoneLocked(lk, token)
}

// releaseGoneLocked is releaseGone with n.mu held.
func (n *notifier) releaseGoneLocked(lk, token string) {
	if n.closed {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, passOnTimeout)
		defer cancel()
		releaseScript.Run(ctx, n.d.client, []string{lk, fenceKey(lk), queueKey(lk), attemptsKey(lk)}, token, n.d.publish, n.scope, waiterTag(token))
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
		w.wake()
	}
}

// close releases the tokens of the handoff waiters that gave up unsure
// (see releaseUnknown), ends every connection and waits for the
// goroutines.
func (n *notifier) close() {
	n.mu.Lock()
	n.closed = true
	unknown := make(map[string]string) // lock key by token
	for ch, l := range n.left {
		if lk, ok := lockKeyOfWaiter(ch); ok && !l.w.held {
			unknown[l.w.token] = lk
		}
	}
	conns := make([]*psConn, 0, len(n.conns))
	for _, c := range n.conns {
		conns = append(conns, c)
		for _, cmd := range c.sent {
			cmd.stop()
		}
	}
	for _, s := range n.subs {
		n.failLocked(s, fmt.Errorf("redisdriver: %w", driver.ErrClosed))
	}
	for ch, l := range n.left {
		delete(n.left, ch)
		l.endLocked(false)
	}
	sentinelPS := n.sentinelPS
	n.mu.Unlock()
	n.releaseUnknown(unknown)
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
			eval(ctx, onceDoer{n.d.client}, releaseScript, []any{nil, nil, 4, lk, fenceKey(lk), queueKey(lk), attemptsKey(lk),
				token, n.d.publish, n.scope, waiterTag(token)})
		})
	}
	wg.Wait()
}
