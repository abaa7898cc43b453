package redisdriver

import (
	"context"
	"errors"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// pipeline sends the commands that act on one key (acquire, refresh,
// release, inspect) through a [batcher]: the driver's one, or on a
// Cluster the one of the node that serves the key, so that a slow node
// holds back only its own commands.
//
// A pipeline is safe for concurrent use.
type pipeline struct {
	client  redis.UniversalClient
	cluster *redis.ClusterClient
	one     *batcher // not Cluster

	mu    sync.Mutex
	nodes map[string]*batcher // Cluster: by node address
	// running counts the goroutines of run and follow; wait waits on
	// idle until there are none. Guarded by mu.
	running int
	idle    sync.Cond

	// left holds the calls whose callers left before their replies
	// came; later calls on their keys wait for those replies (see Do).
	left leftCalls
	// bound is the longest a round trip may take by the client's
	// timeouts, or -1 (see roundTripBound).
	bound time.Duration

	// queued, if set (by tests), runs after a command joins a queue.
	queued func()
	// lanes and eager, if set (by tests), replace maxInFlight and the
	// senders' yield in the batchers made from then on.
	lanes int
	eager bool
}

func newPipeline(client redis.UniversalClient) *pipeline {
	p := &pipeline{client: client, nodes: map[string]*batcher{}}
	p.left.byKey = map[string][]*call{}
	p.idle.L = &p.mu
	p.bound = roundTripBound(client)
	p.cluster, _ = client.(*redis.ClusterClient)
	if p.cluster == nil {
		p.one = p.newBatcher()
	}
	return p
}

// Do runs the command args as client.Do would, alone or in a batch, as
// one attempt (see [onceCmd]).
//
// A call on a key waits first for the replies of the calls on that key
// whose callers left while the calls were in flight: the root undoes
// such a call (it releases the token) as soon as its caller returns, and
// the undo, sent on another connection, must not reach the server before
// the call it undoes, or it finds nothing to undo and the call then
// takes the key for nobody. Waiting for the reply, not only for the
// write, orders them however the server reads its connections.
func (p *pipeline) Do(ctx context.Context, args ...any) *redis.Cmd {
	return p.do(ctx, false, args)
}

// Awaited returns the pipeline as a doer for the commands that take a
// key (acquires): such a command is never cut in flight by its caller's
// deadline, even when sent alone, but runs to its reply (or the client's
// own timeouts) after its caller left, and the calls on its key that
// follow wait for that reply, as for a batch. Cut at the deadline, the
// connection would be closed with the acquire written and unanswered,
// and the server may run it after the undo that the root sends next on
// another connection: Redis serves its ready connections in epoll's
// order, not in the order their data came. A caller whose deadline is
// further than the client's timeouts reach, or who has none, still
// sends its command on its own goroutine: the other goroutine costs a
// lone acquire+release pair about 45 µs (70-80 µs against 115-140 on a
// loaded 2-core machine), so it is used only where it changes the
// outcome.
func (p *pipeline) Awaited() doer { return awaitedPipeline{p} }

type awaitedPipeline struct{ p *pipeline }

func (a awaitedPipeline) Do(ctx context.Context, args ...any) *redis.Cmd {
	return a.p.do(ctx, true, args)
}

// roundTripBound returns the longest that go-redis lets a command take
// from its write to its reply: the client's write and read timeouts; -1
// if one of them is unbounded or the client's options are not known. A
// caller whose deadline is further away than that cannot cut a written
// command: the client's own timeouts would first (waiting for a
// connection and dialing come before the write, and a deadline that
// ends them cuts nothing written, unless they last so long that the
// write starts close to it).
func roundTripBound(client redis.UniversalClient) time.Duration {
	var timeouts []time.Duration
	switch c := client.(type) {
	case *redis.Client:
		o := c.Options()
		timeouts = []time.Duration{o.WriteTimeout, o.ReadTimeout}
	case *redis.ClusterClient:
		o := c.Options()
		timeouts = []time.Duration{o.WriteTimeout, o.ReadTimeout}
	default:
		return -1
	}
	var bound time.Duration
	for _, t := range timeouts {
		if t <= 0 {
			return -1
		}
		bound += t
	}
	return bound
}

func (p *pipeline) do(ctx context.Context, awaited bool, args []any) *redis.Cmd {
	key := commandKey(args)
	if err := p.left.wait(ctx, key); err != nil {
		if src, ok := freesKey(args); ok {
			p.follow(ctx, key, args, src)
		}
		cmd := redis.NewCmd(ctx, args...)
		cmd.SetErr(err)
		return cmd
	}
	return p.send(ctx, awaited, key, args)
}

// send sends the command args on key through the batcher of key's node.
func (p *pipeline) send(ctx context.Context, awaited bool, key string, args []any) *redis.Cmd {
	if p.cluster == nil {
		return p.one.do(ctx, awaited, args)
	}
	b, err := p.node(ctx, key)
	if err != nil {
		// The slot map cannot be had: the cluster client answers
		// (or fails) alone.
		return doOnce(ctx, p.client, args)
	}
	return b.do(ctx, awaited, args)
}

// follow sends args, a command that frees key (see freesKey) whose
// caller's context ended while it waited for the calls on key left in
// flight, once those calls are answered, from a goroutine of the
// pipeline's: the driver held it back, and dropped it would leave the
// key to the call it undoes, held by nobody for its TTL, whenever that
// call's reply comes later than its undo's caller is willing to wait (a
// short ReleaseTimeout, Redlock's node timeout, a slow server). Its
// caller was told the outcome is unknown, which allows a late release;
// the calls on key that follow wait for it in turn. If the server no
// longer has the script cached (NOSCRIPT), it is sent again as EVAL of
// src.
func (p *pipeline) follow(ctx context.Context, key string, args []any, src any) {
	c := &call{ctx: ctx, args: args, done: make(chan struct{}), sent: true, left: true}
	before := p.left.addLast(key, c)
	p.mu.Lock()
	p.running++ // before the goroutine starts: wait sees it
	p.mu.Unlock()
	go func() {
		defer func() {
			// A hook of the user's panicked: no caller is left to
			// raise it in, as for any call whose caller left.
			c.panicked = recover()
			close(c.done)
			p.left.remove(key, c)
			p.mu.Lock()
			if p.running--; p.running == 0 {
				p.idle.Broadcast()
			}
			p.mu.Unlock()
		}()
		for _, b := range before {
			<-b.done
		}
		ctx, cancel := detachedContext(ctx, time.Now(), p.bound)
		defer cancel()
		cmd := p.send(ctx, false, key, args)
		if noScript(cmd.Err()) && args[0] == "evalsha" {
			args[0], args[1] = "eval", src
			p.send(ctx, false, key, args)
		}
	}()
}

// run runs fn, a round trip that may take key (one that Do cannot carry:
// a pipeline of several commands on one connection), as an awaited
// command goes out (see [pipeline.Awaited]): after the replies of the
// calls on key whose callers left; and, if ctx's deadline could cut it
// in flight, on a goroutine of the pipeline's with ctx's values but
// neither its deadline nor its cancellation. When ctx ends before fn
// returns, run returns ctx's error at once, and the calls on key that
// follow (the root's undo first) wait for fn to return; fn's results
// are then not to be read. Otherwise run returns nil. A panic in fn (a
// hook of the user's) is raised in run's caller, if it is still there.
func (p *pipeline) run(ctx context.Context, key string, fn func(context.Context)) error {
	if err := p.left.wait(ctx, key); err != nil {
		return err
	}
	if !cutBy(ctx, p.bound) {
		fn(ctx)
		return nil
	}
	c := &call{ctx: ctx, done: make(chan struct{}), sent: true}
	p.mu.Lock()
	p.running++ // before the goroutine starts: wait sees it
	p.mu.Unlock()
	go func() {
		defer func() {
			c.panicked = recover()
			close(c.done)
			p.mu.Lock()
			if c.left {
				p.left.remove(key, c)
			}
			if p.running--; p.running == 0 {
				p.idle.Broadcast()
			}
			p.mu.Unlock()
		}()
		deadline, _ := ctx.Deadline()
		ctx, cancel := detachedContext(ctx, deadline, p.bound)
		defer cancel()
		fn(ctx)
	}()
	select {
	case <-c.done:
	case <-ctx.Done():
		p.mu.Lock()
		select {
		case <-c.done: // returned meanwhile: its results are known
		default:
			c.left = true
			p.left.add(key, c)
			p.mu.Unlock()
			return ctx.Err()
		}
		p.mu.Unlock()
	}
	if c.panicked != nil {
		panic(c.panicked)
	}
	return nil
}

// leftCalls is the set of calls sent in batches whose callers left
// (their contexts ended) before the replies came, by key. It is safe for
// concurrent use.
type leftCalls struct {
	n     atomic.Int64 // how many: calls skip the lock while there are none
	mu    sync.Mutex
	byKey map[string][]*call
}

func (l *leftCalls) add(k string, c *call) {
	l.mu.Lock()
	l.byKey[k] = append(l.byKey[k], c)
	l.mu.Unlock()
	l.n.Add(1)
}

// addLast adds c as the last call on k, and returns the calls on k
// before it.
func (l *leftCalls) addLast(k string, c *call) []*call {
	l.mu.Lock()
	before := slices.Clone(l.byKey[k])
	l.byKey[k] = append(l.byKey[k], c)
	l.mu.Unlock()
	l.n.Add(1)
	return before
}

func (l *leftCalls) remove(k string, c *call) {
	l.mu.Lock()
	if calls := slices.DeleteFunc(l.byKey[k], func(x *call) bool { return x == c }); len(calls) > 0 {
		l.byKey[k] = calls
	} else {
		delete(l.byKey, k)
	}
	l.mu.Unlock()
	l.n.Add(-1)
}

// wait waits until the calls on key that were left in flight are
// answered, or ctx ends.
func (l *leftCalls) wait(ctx context.Context, key string) error {
	if l.n.Load() == 0 {
		return nil
	}
	l.mu.Lock()
	calls := slices.Clone(l.byKey[key])
	l.mu.Unlock()
	for _, c := range calls {
		select {
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// node returns the batcher of the master that serves key, by the
// cluster client's slot map. Its batches go out as cluster pipelines,
// which follow MOVED and ASK: when a slot moves, a batch in flight still
// reaches the key's new master, and the next calls find the new one.
func (p *pipeline) node(ctx context.Context, key string) (*batcher, error) {
	c, err := p.cluster.MasterForKey(ctx, key)
	if err != nil {
		return nil, err
	}
	addr := c.Options().Addr
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.nodes[addr]
	if b == nil {
		b = p.newBatcher()
		p.nodes[addr] = b
	}
	return b, nil
}

func (p *pipeline) newBatcher() *batcher {
	b := &batcher{client: p.client, left: &p.left, bound: p.bound, queued: p.queued, lanes: maxInFlight, yield: !p.eager}
	if p.lanes > 0 {
		b.lanes = p.lanes
	}
	b.gone.L = &b.mu
	return b
}

// commandKey returns the first key of a command of the driver: EVAL and
// EVALSHA name it after the script and the number of keys, others first.
// Every key of one call has the same hash tag, so the first gives the
// slot.
func commandKey(args []any) string {
	i := 1
	if s, ok := args[0].(string); ok && (s == "evalsha" || s == "eval") {
		i = 3
	}
	if i < len(args) {
		if k, ok := args[i].(string); ok {
			return k
		}
	}
	return ""
}

// wait waits for the goroutines of run and follow, then for the sender
// goroutines of every batcher, to finish: in that order, as the former
// send through the latter.
func (p *pipeline) wait() {
	p.mu.Lock()
	for p.running > 0 {
		p.idle.Wait()
	}
	nodes := make([]*batcher, 0, len(p.nodes))
	for _, b := range p.nodes {
		nodes = append(nodes, b)
	}
	p.mu.Unlock()
	if p.one != nil {
		p.one.wait()
	}
	for _, b := range nodes {
		b.wait()
	}
}

// batcher sends the commands of concurrent callers to Redis (one server,
// or one Cluster node) together, as one go-redis pipeline on one
// connection: the single Redis thread then reads and answers them with
// one system call each way instead of one per caller, which is most of
// what a lock costs the server (see issue 15 and benchmarks/README.md).
//
// It never waits to fill a batch. While fewer than maxInFlight commands
// or batches are in flight, a command goes out at once, as client.Do, on
// the caller's goroutine and context: a lone caller pays nothing, and a
// few callers each get a connection of their own. Commands that arrive
// while maxInFlight are in flight queue up, and leave together as the
// next batch as soon as one of those is answered. So batches form only
// when the driver already keeps maxInFlight round trips busy, and grow
// with the load.
//
// A sender that got the replies of a batch yields once (a Gosched, not
// a timer) to the callers it woke before it takes the queue: under load
// they make their next call at once, find every lane still busy and
// queue, and the sender takes them all as the next batch on the lane it
// still holds. Without the yield the sender would free its lane, the
// first of them would take it for one command alone, and the others
// would wait behind it for a whole round trip: that is what made the
// first version (two lanes, no yield) slower than direct calls with 8
// goroutines. A lone caller never meets a sender: it sends its own
// command.
//
// Each command keeps its own reply and error (go-redis pipelines are per
// command). A batch that a hook of the user's refuses fails each of its
// calls with the hook's error, and a hook's panic is raised in each
// caller of the batch, as client.Do would raise it. A caller whose
// context ends while its command waits in the queue takes it out: it is
// never sent. A caller whose context ends after its command left returns
// at once with the context's error, whose outcome is unknown, as a
// client.Do cut short by its context would; the batch goes on to its
// reply, and the calls on the caller's key that follow (the root's undo
// of the call first) wait for it (see [pipeline.Do]).
//
// A batcher is safe for concurrent use.
type batcher struct {
	client redis.UniversalClient
	left   *leftCalls // the pipeline's
	lanes  int        // maxInFlight, or a test's
	yield  bool       // senders yield to the callers they woke (see above)
	// bound is the longest a round trip may take by the client's own
	// timeouts, or -1 if they do not bound it (see cutByCaller).
	bound time.Duration

	mu    sync.Mutex
	busy  int     // commands or batches in flight, at most lanes
	queue []*call // the next batch

	// senders counts the goroutines that send queued batches, each
	// started when a command in flight is answered with others queued
	// behind it and ending when the queue is empty; wait waits on gone
	// until there are none. (Not a WaitGroup: a call that began before
	// Close may start one while Close waits.)
	senders int
	gone    sync.Cond

	// queued, if set (by tests), runs after a command joins the queue.
	queued func()
}

// call is one caller's command waiting in, or sent with, a batch.
type call struct {
	ctx  context.Context
	args []any
	cmd  *redis.Cmd    // the reply, set before done is closed
	done chan struct{} // closed when the batch with the call is answered
	sent bool          // guarded by batcher.mu: the call left in a batch
	// left, guarded by batcher.mu, is set when the caller returned
	// after the call was sent and before its reply, or left a call that
	// frees a key in the queue (see await): the call is then in
	// leftCalls until its reply.
	left bool
	// panicked is what a hook of the user's panicked with while the
	// batch was sent, if it did; set before done is closed.
	panicked any
}

// reply returns the call's reply, or panics as the round trip that
// carried it did: in the caller, as client.Do would have, not in the
// sender, where no caller could recover it.
func (c *call) reply() *redis.Cmd {
	if c.panicked != nil {
		panic(c.panicked)
	}
	return c.cmd
}

// maxInFlight bounds the commands and batches of a batcher in flight at
// once, each on its own connection. Measured with the benchmarks
// module's pair scenarios (pinned layout, the variants side by side in
// one run): two lanes without the senders' yield (the first version),
// direct calls only, and four lanes with it made, with 8 goroutines,
// 16.3k, 21.4k and 29.5k pairs/s (p50 363, 233 and 250 µs); with 32,
// 24.0k, 19.4k and 38.1k; with 128, 45.1k, 45.5k and 68.6k. In sweeps
// of 2 to 8 lanes, senders yielding, 8 goroutines did as well as direct
// calls with four or more lanes and worse with fewer (p50 242 µs with
// four, 419 with two: batches of four waited behind each other while
// the server had time to spare), and 32 and 128 did about as well with
// anything from two to eight, within the noise of a shared machine.
// Four it is, the fewest that serve a few callers as direct calls
// would: batches form only beyond that, and are then the largest.
const maxInFlight = 4

// Do runs the command args as client.Do would, alone or in a batch.
func (b *batcher) Do(ctx context.Context, args ...any) *redis.Cmd {
	return b.do(ctx, false, args)
}

// do runs the command args, alone or in a batch. An awaited command
// whose caller's deadline could cut it in flight goes out at once too,
// but from a goroutine of the batcher's, which waits for its reply when
// the caller leaves (see [pipeline.Awaited]).
func (b *batcher) do(ctx context.Context, awaited bool, args []any) *redis.Cmd {
	b.mu.Lock()
	if b.busy < b.lanes {
		b.busy++
		if awaited && b.cutByCaller(ctx) {
			b.senders++ // in the same critical section: wait sees it
			c := &call{ctx: ctx, args: args, done: make(chan struct{}), sent: true}
			b.mu.Unlock()
			go b.send([]*call{c})
			return b.await(c)
		}
		b.mu.Unlock()
		defer b.next() // also when a hook of the user's panics
		return doOnce(ctx, b.client, args)
	}
	c := &call{ctx: ctx, args: args, done: make(chan struct{})}
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	if b.queued != nil {
		b.queued()
	}
	return b.await(c)
}

// cutByCaller reports whether ctx's deadline may come before the
// client's own timeouts end a round trip begun now (see roundTripBound):
// go-redis would then close the connection at the deadline with the
// command perhaps written.
func (b *batcher) cutByCaller(ctx context.Context) bool { return cutBy(ctx, b.bound) }

// cutBy reports whether ctx's deadline may come before the client's own
// timeouts, which bound a round trip to bound (-1: unbounded), end a
// round trip begun now.
func cutBy(ctx context.Context, bound time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return ok && (bound < 0 || time.Until(deadline) <= bound)
}

// await returns the reply of c, queued or sent, or the context's error
// if ctx ends first: c then leaves the queue, or, if it was sent, the
// calls on its key that follow wait for its reply.
func (b *batcher) await(c *call) *redis.Cmd {
	select {
	case <-c.done:
		return c.reply()
	case <-c.ctx.Done():
	}
	b.mu.Lock()
	if !c.sent {
		if _, ok := freesKey(c.args); ok {
			// Held back for the batch, a command that frees a key
			// goes out all the same, as it would after the calls on
			// its key (see pipeline.follow).
			c.left = true
			b.left.add(commandKey(c.args), c)
		} else {
			b.queue = slices.DeleteFunc(b.queue, func(q *call) bool { return q == c })
		}
	} else {
		select {
		case <-c.done: // answered meanwhile: the reply is known
			b.mu.Unlock()
			return c.reply()
		default:
		}
		// In flight: the caller returns, and the calls on its key that
		// follow (the root's undo first) wait for its reply.
		c.left = true
		b.left.add(commandKey(c.args), c)
	}
	b.mu.Unlock()
	cmd := redis.NewCmd(c.ctx, c.args...)
	cmd.SetErr(c.ctx.Err())
	return cmd
}

// next hands the queue, if any, to a sender goroutine, after a command
// sent directly was answered; else frees its lane.
func (b *batcher) next() {
	b.mu.Lock()
	batch := b.takeLocked()
	if len(batch) > 0 {
		b.senders++ // in the same critical section: wait sees it
	} else {
		b.busy--
	}
	b.mu.Unlock()
	if len(batch) > 0 {
		go b.send(batch)
	}
}

// takeLocked returns the queued calls whose context has not ended, and
// those whose callers left them (see await), marked sent, and empties
// the queue. The other calls whose context ended leave the queue
// unsent: their callers are returning. b.mu is held.
func (b *batcher) takeLocked() []*call {
	var batch []*call
	for _, c := range b.queue {
		if c.ctx.Err() == nil || c.left {
			c.sent = true
			batch = append(batch, c)
		}
	}
	clear(b.queue)
	b.queue = b.queue[:0]
	return batch
}

// send sends batch, then every batch that queued up meanwhile, until the
// queue is empty; then frees its lane.
func (b *batcher) send(batch []*call) {
	for len(batch) > 0 {
		b.exec(batch)
		if b.yield {
			runtime.Gosched()
		}
		b.mu.Lock()
		for _, c := range batch {
			if c.left {
				b.left.remove(commandKey(c.args), c)
			}
		}
		batch = b.takeLocked()
		if len(batch) == 0 {
			b.busy--
			b.senders--
			b.gone.Broadcast()
		}
		b.mu.Unlock()
	}
}

// exec sends batch and hands each caller its reply: one command as
// client.Do on its own context, more as one pipeline.
func (b *batcher) exec(batch []*call) {
	defer func() {
		// A hook of the user's panicked: before any call was
		// answered. Each caller panics with it.
		if p := recover(); p != nil {
			for _, c := range batch {
				c.panicked = p
				close(c.done)
			}
		}
	}()
	ctx, cancel := b.batchContext(batch)
	defer cancel()
	if len(batch) == 1 {
		c := batch[0]
		c.cmd = doOnce(ctx, b.client, c.args)
		close(c.done)
		return
	}
	pipe := b.client.Pipeline()
	for _, c := range batch {
		c.cmd = queueOnce(c.ctx, pipe, c.args)
	}
	_, err := pipe.Exec(ctx) // errors are per command
	for _, c := range batch {
		if err != nil && c.cmd.Err() == nil && c.cmd.Val() == nil {
			// No reply and no error: the pipeline never ran, a hook
			// of the user's refused it (go-redis sets a refused
			// lone command's error, not a pipeline's commands').
			c.cmd.SetErr(err)
		}
		markUnsent(c.cmd)
		close(c.done)
	}
}

// batchContext is the context of a round trip that carries batch: the
// values of the first call's context, and neither the deadline nor the
// cancellation of any: a caller that gives up returns on its own, and
// its call's reply is still awaited, so that the calls on its key that
// follow (the root's undo) go out after it (see [pipeline.Do]). Cut at
// a caller's deadline, the connection would be closed with the call
// written and unanswered, and the server may run it after a command
// sent later on another connection (its ready connections are not
// served in the order their data came). The client's read and write
// timeouts bound the round trip; if the client has none, see
// detachedContext.
func (b *batcher) batchContext(batch []*call) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, c := range batch {
		deadline, ok := c.ctx.Deadline()
		if !ok {
			latest = time.Time{}
			break
		}
		if deadline.After(latest) {
			latest = deadline
		}
	}
	return detachedContext(batch[0].ctx, latest, b.bound)
}

// unboundedGrace is how long after its callers' latest deadline a round
// trip that the client's timeouts do not bound runs on: as long as the
// root's undo of a call that the deadline left in flight waits for it
// by default (5s, the ReleaseTimeout of dlock.Options). Its reply can order nothing
// after that, and unbounded it would hold its lane, and Close, for as
// long as the server does not answer (a dead host: until TCP gives up).
const unboundedGrace = 5 * time.Second

// detachedContext returns ctx's values without its deadline or
// cancellation, for a round trip that runs to its reply after its
// callers left. If the client's timeouts do not bound the round trip
// (bound < 0), it ends unboundedGrace after latest, the callers' latest
// deadline; a zero latest (a caller without deadline, who waits for the
// reply however long it takes) leaves it unbounded.
func detachedContext(ctx context.Context, latest time.Time, bound time.Duration) (context.Context, context.CancelFunc) {
	ctx = context.WithoutCancel(ctx)
	if bound >= 0 || latest.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, latest.Add(unboundedGrace))
}

// wait waits for the sender goroutines, if any run, to finish: at Close,
// after the driver refuses new calls. A batch in flight ends by its
// reply, or the client's read timeout.
func (b *batcher) wait() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.senders > 0 {
		b.gone.Wait()
	}
}

// onceCmd is a command that go-redis sends at most once. By default
// go-redis sends a command or pipeline again after EOF, a reset or a
// timeout (MaxRetries, 3 unless set): on its own, after the driver's
// caller may have left and the root undone the call (a batch runs on a
// context detached from its callers'), so that an acquire takes the key
// again for nobody, and a release that was applied is sent again and
// answered "not held". The driver makes one attempt per call, as its
// contract says ("no retries"); the root retries what may be retried.
// One attempt also makes a dial error exact: the command was never
// written (see [unsentError]).
type onceCmd struct{ *redis.Cmd }

// NoRetry tells go-redis not to send the command again, nor any
// pipeline that carries it.
func (onceCmd) NoRetry() bool { return true }

// processor is a client or a pipeline.
type processor interface {
	Process(ctx context.Context, cmd redis.Cmder) error
}

// doOnce runs the command args on c as one attempt (see [onceCmd]).
func doOnce(ctx context.Context, c processor, args []any) *redis.Cmd {
	cmd := redis.NewCmd(ctx, args...)
	c.Process(ctx, onceCmd{cmd})
	markUnsent(cmd)
	return cmd
}

// queueOnce queues the command args on pipe as one attempt (see
// [onceCmd]): go-redis then sends pipe once. After pipe.Exec, the
// command's error is to be passed through markUnsent.
func queueOnce(ctx context.Context, pipe redis.Pipeliner, args []any) *redis.Cmd {
	cmd := redis.NewCmd(ctx, args...)
	pipe.Process(ctx, onceCmd{cmd})
	return cmd
}

// onceDoer is a client or pipeline whose Do makes one attempt.
type onceDoer struct{ c processor }

func (o onceDoer) Do(ctx context.Context, args ...any) *redis.Cmd { return doOnce(ctx, o.c, args) }

// markUnsent wraps the error of cmd, sent as one attempt, in an
// [unsentError] when it shows the command was never written: no
// connection could be dialed or taken from the pool.
func markUnsent(cmd *redis.Cmd) {
	if err := cmd.Err(); err != nil && unsent(err) {
		cmd.SetErr(&unsentError{err})
	}
}

func unsent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted)
}

// unsentError is the failure of a command sent as one attempt that was
// never written: it had no connection. A bare dial error or pool timeout
// means less: go-redis may have written the command on an earlier
// attempt, then found no connection for its retry.
type unsentError struct{ err error }

func (e *unsentError) Error() string { return e.err.Error() }
func (e *unsentError) Unwrap() error { return e.err }
