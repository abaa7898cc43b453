package autopipe

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// batcher sends the commands of concurrent callers to Redis (one server,
// or one Cluster node) together, as one go-redis pipeline on one
// connection: the single Redis thread then reads and answers them with
// one system call each way instead of one per caller, which is most of
// what a lock costs the server (see issue 15 and benchmarks/README.md).
//
// It never waits to fill a batch, and never holds a batch back for a
// reply. A command that finds nothing in flight and nothing queued goes
// out at once, as client.Do, on the caller's goroutine and context: a
// lone caller pays nothing. A command that finds another in flight joins
// the queue, and the queue leaves as one batch as soon as a flush
// goroutine gets the CPU: the first command queued starts one, which
// yields once (a Gosched, not a timer) so that the callers already
// runnable (woken by the same reply, most often) join the queue first,
// then takes the whole queue and sends it on a connection of its own,
// while the batches before it are still in flight. Batches are as large
// as the callers that came together, and a lone caller never meets one.
// This is what rueidis does on its one connection (its writer flushes
// whatever queued while it wrote), with go-redis connections: the
// commands of 8 goroutines making lock pairs travel in 0.3 to 0.55 round
// trips per pair instead of 2, where the earlier rule (a command went out
// alone while fewer than four were in flight) made 0.9 (see
// TestBatchesFormAtEightCallers).
//
// At most MaxInFlight commands or batches are in flight at once. A
// command that arrives while that many are queues until one of them is
// answered; its sender, after a yield to the callers it woke, takes the
// queue as the next batch on the connection it still holds.
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
// of the call first) wait for it (see [Pipeline.Do]).
//
// A batcher is safe for concurrent use.
type batcher struct {
	client redis.UniversalClient
	left   *leftCalls                          // the pipeline's
	frees  func(args []any) (src any, ok bool) // the pipeline's
	lanes  int                                 // MaxInFlight, or a test's
	yield  bool                                // senders yield to the callers they woke (see above)
	// bound is the longest a round trip may take by the client's own
	// timeouts, or -1 if they do not bound it (see cutByCaller).
	bound time.Duration

	mu    sync.Mutex
	busy  int     // commands or batches in flight, at most lanes
	queue []*call // the next batch
	// flushing is set while a flush goroutine is on its way to take
	// the queue.
	flushing bool

	// senders counts the goroutines that send queued batches, each
	// started when a command in flight is answered with others queued
	// behind it and ending when the queue is empty; wait waits on gone
	// until there are none. (Not a WaitGroup: a call that began before
	// Close may start one while Close waits.)
	senders int
	gone    sync.Cond

	// queued, if set (by tests), runs after a command joins the queue
	// with every lane busy: it waits for a reply before it goes out.
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

// MaxInFlight bounds the commands and batches of a batcher in flight at
// once, each on its own connection: the connections a driver takes from
// the client's pool under load. Commands that find that many in flight
// wait for one to be answered, and leave as the next batch on its lane.
// Measured with the benchmarks module's pair scenarios (pinned layout)
// when a command went out alone while fewer than MaxInFlight were in
// flight: in sweeps of 2 to 8 lanes, 8 goroutines did as well as direct
// calls with four or more and worse with fewer (p50 242 µs with four,
// 419 with two: batches waited behind each other while the server had
// time to spare), and 32 and 128 did about as well with anything from
// two to eight. Now that a command that finds another in flight waits
// only for the flush, the sweep of 4 and 8 (BenchmarkPipelinePairs, and
// the benchmarks module on a machine loaded 4 to 13) showed no
// difference above the noise: four it stays.
const MaxInFlight = 4

// AllDirect, as a test's lanes (see [Pipeline.SetLanes]), sends every
// command alone, from its caller: no command is ever queued.
const AllDirect = 1 << 30

// Do runs the command args as client.Do would, alone or in a batch.
func (b *batcher) Do(ctx context.Context, args ...any) *redis.Cmd {
	return b.do(ctx, false, args)
}

// do runs the command args, alone or in a batch. An awaited command
// whose caller's deadline could cut it in flight goes out at once too,
// but from a goroutine of the batcher's, which waits for its reply when
// the caller leaves (see [Pipeline.Awaited]).
func (b *batcher) do(ctx context.Context, awaited bool, args []any) *redis.Cmd {
	b.mu.Lock()
	if b.busy == 0 && len(b.queue) == 0 || b.lanes == AllDirect {
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
		return DoOnce(ctx, b.client, args)
	}
	c := &call{ctx: ctx, args: args, done: make(chan struct{})}
	b.queue = append(b.queue, c)
	full := b.busy >= b.lanes
	if !full && !b.flushing {
		b.flushing = true
		b.senders++ // in the same critical section: wait sees it
		go b.flush()
	}
	b.mu.Unlock()
	if full && b.queued != nil {
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
		if _, ok := b.frees(c.args); ok {
			// Held back for the batch, a command that frees a key
			// goes out all the same, as it would after the calls on
			// its key (see Pipeline.follow).
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

// flush takes the queue once the callers made runnable meanwhile had
// their turn to join it, and sends it on a lane of its own; unless the
// queue is empty (a sender took it) or every lane is busy (a sender
// will take it).
func (b *batcher) flush() {
	if b.yield {
		runtime.Gosched()
	}
	b.mu.Lock()
	b.flushing = false
	var batch []*call
	if b.busy < b.lanes {
		batch = b.takeLocked()
	}
	if len(batch) == 0 {
		b.senders--
		b.gone.Broadcast()
		b.mu.Unlock()
		return
	}
	b.busy++
	b.mu.Unlock()
	b.send(batch)
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
		c.cmd = DoOnce(ctx, b.client, c.args)
		close(c.done)
		return
	}
	pipe := b.client.Pipeline()
	for _, c := range batch {
		c.cmd = QueueOnce(c.ctx, pipe, c.args)
	}
	_, err := pipe.Exec(ctx) // errors are per command
	for _, c := range batch {
		if err != nil && c.cmd.Err() == nil && c.cmd.Val() == nil {
			// No reply and no error: the pipeline never ran, a hook
			// of the user's refused it (go-redis sets a refused
			// lone command's error, not a pipeline's commands').
			c.cmd.SetErr(err)
		}
		MarkUnsent(c.cmd)
		close(c.done)
	}
}

// batchContext is the context of a round trip that carries batch: the
// values of the first call's context, and neither the deadline nor the
// cancellation of any: a caller that gives up returns on its own, and
// its call's reply is still awaited, so that the calls on its key that
// follow (the root's undo) go out after it (see [Pipeline.Do]). Cut at
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
