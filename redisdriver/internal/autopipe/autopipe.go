package autopipe

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Pipeline sends the commands that act on one key (acquire, refresh,
// release, inspect) through a [batcher]: the pipeline's one, or on a
// Cluster the one of the node that serves the key, so that a slow node
// holds back only its own commands.
//
// A Pipeline is safe for concurrent use.
type Pipeline struct {
	client  redis.UniversalClient
	cluster *redis.ClusterClient
	one     *batcher // not Cluster
	// frees reports whether a command frees a key, and the source of
	// its script (see New).
	frees func(args []any) (src any, ok bool)

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
	// lanes and eager, if set (by tests), replace MaxInFlight and the
	// senders' yield in the batchers made from then on.
	lanes int
	eager bool
}

// New returns a Pipeline over client. frees reports whether the command
// args runs a script that frees a key, and the script's source: such a
// command, once held back (behind the calls on its key left in flight,
// or for the next batch), goes out even after its caller gave up (see
// follow), and is sent again as EVAL of the source if the server no
// longer has the script cached.
func New(client redis.UniversalClient, frees func(args []any) (src any, ok bool)) *Pipeline {
	p := &Pipeline{client: client, frees: frees, nodes: map[string]*batcher{}}
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
func (p *Pipeline) Do(ctx context.Context, args ...any) *redis.Cmd {
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
func (p *Pipeline) Awaited() Doer { return awaitedPipeline{p} }

type awaitedPipeline struct{ p *Pipeline }

// Doer is a client, a pipeline or an awaited pipeline.
type Doer interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// NoScript reports the server's NOSCRIPT reply (the script is not cached).
// It tests for an error first: redis.HasErrorPrefix allocates on every
// call, nil included (its errors.As target escapes), and the common reply
// is no error.
func NoScript(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT")
}

// SetQueued makes p run f each time a call joins the queue of one of its
// batchers; for tests, before p's first call.
func (p *Pipeline) SetQueued(f func()) {
	p.queued = f
	if p.one != nil {
		p.one.queued = f
	}
}

// SetLanes makes p send up to lanes commands or batches at once, its
// senders yielding unless eager; for tests, before p's first call. lanes
// AllDirect sends every command directly, from its caller, as if there
// were no batcher.
func (p *Pipeline) SetLanes(lanes int, eager bool) {
	p.lanes, p.eager = lanes, eager
	if p.one != nil {
		p.one = p.newBatcher()
	}
}

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

func (p *Pipeline) do(ctx context.Context, awaited bool, args []any) *redis.Cmd {
	key := commandKey(args)
	if err := p.left.wait(ctx, key); err != nil {
		if src, ok := p.frees(args); ok {
			p.follow(ctx, key, args, src)
		}
		cmd := redis.NewCmd(ctx, args...)
		cmd.SetErr(err)
		return cmd
	}
	return p.send(ctx, awaited, key, args)
}

// send sends the command args on key through the batcher of key's node.
func (p *Pipeline) send(ctx context.Context, awaited bool, key string, args []any) *redis.Cmd {
	if p.cluster == nil {
		return p.one.do(ctx, awaited, args)
	}
	b, err := p.node(ctx, key)
	if err != nil {
		// The slot map cannot be had: the cluster client answers
		// (or fails) alone.
		return DoOnce(ctx, p.client, args)
	}
	return b.do(ctx, awaited, args)
}

// follow sends args, a command that frees key (see Frees) whose
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
func (p *Pipeline) follow(ctx context.Context, key string, args []any, src any) {
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
		if NoScript(cmd.Err()) && args[0] == "evalsha" {
			args[0], args[1] = "eval", src
			p.send(ctx, false, key, args)
		}
	}()
}

// run runs fn, a round trip that may take key (one that Do cannot carry:
// a pipeline of several commands on one connection), as an awaited
// command goes out (see [Pipeline.Awaited]): after the replies of the
// calls on key whose callers left; and, if ctx's deadline could cut it
// in flight, on a goroutine of the pipeline's with ctx's values but
// neither its deadline nor its cancellation. When ctx ends before fn
// returns, run returns ctx's error at once, and the calls on key that
// follow (the root's undo first) wait for fn to return; fn's results
// are then not to be read. Otherwise run returns nil. A panic in fn (a
// hook of the user's) is raised in run's caller, if it is still there.
func (p *Pipeline) Run(ctx context.Context, key string, fn func(context.Context)) error {
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

// node returns the batcher of the master that serves key, by the
// cluster client's slot map. Its batches go out as cluster pipelines,
// which follow MOVED and ASK: when a slot moves, a batch in flight still
// reaches the key's new master, and the next calls find the new one.
func (p *Pipeline) node(ctx context.Context, key string) (*batcher, error) {
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

func (p *Pipeline) newBatcher() *batcher {
	b := &batcher{client: p.client, left: &p.left, frees: p.frees, bound: p.bound, queued: p.queued, lanes: MaxInFlight, yield: !p.eager}
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
func (p *Pipeline) Wait() {
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
