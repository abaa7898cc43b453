package redisdriver

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// batcher sends the commands of concurrent callers of one driver to Redis
// together, as one go-redis pipeline on one connection: the single Redis
// thread then reads and answers them with one system call each way
// instead of one per caller, which is most of what a lock costs the
// server (see issue 15 and benchmarks/README.md).
//
// It never waits to fill a batch. While fewer than maxInFlight commands
// or batches are in flight, a command goes out at once, as client.Do, on
// the caller's goroutine and context: a lone caller pays nothing.
// Commands that arrive while maxInFlight are in flight queue up, and
// leave together as the next batch as soon as one of those is answered.
// So batches grow only with the load.
//
// Each command keeps its own reply and error (go-redis pipelines are per
// command). A caller whose context ends while its command waits in the
// queue takes it out: it is never sent. A caller whose context ends after
// its command left returns at once with the context's error, whose
// outcome is unknown, as a client.Do cut short by its context would
// (the root then undoes what it may have done).
//
// On a Cluster client the batcher is off: every command goes out as
// client.Do. With one batch in flight per driver, a slow node would hold
// back the commands of every other node, and batching per node needs the
// driver to follow slot moves itself (a node client does not): left for
// later. Only the commands that act on one key go through it (acquire,
// refresh, release, inspect); a batch of refreshes is already a pipeline.
//
// A batcher is safe for concurrent use.
type batcher struct {
	client redis.UniversalClient
	direct bool // Cluster: no batching

	mu    sync.Mutex
	busy  int     // commands or batches in flight, at most maxInFlight
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
}

// maxInFlight bounds the commands and batches of a batcher in flight at
// once, each on its own connection. With two, the server works on one
// batch while the client reads the replies of the other and gathers the
// next, instead of idling in between; with one, the 32-goroutine pair
// benchmark made 0.86× rueidislock's pairs/s, with two 0.94×, and four
// did no better than two.
const maxInFlight = 2

func newBatcher(client redis.UniversalClient) *batcher {
	_, cluster := client.(*redis.ClusterClient)
	b := &batcher{client: client, direct: cluster || client == nil}
	b.gone.L = &b.mu
	return b
}

// Do runs the command args as client.Do would, alone or in a batch.
func (b *batcher) Do(ctx context.Context, args ...any) *redis.Cmd {
	if b.direct {
		return b.client.Do(ctx, args...)
	}
	b.mu.Lock()
	if b.busy < maxInFlight {
		b.busy++
		b.mu.Unlock()
		cmd := b.client.Do(ctx, args...)
		b.next()
		return cmd
	}
	c := &call{ctx: ctx, args: args, done: make(chan struct{})}
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	if b.queued != nil {
		b.queued()
	}
	select {
	case <-c.done:
		return c.cmd
	case <-ctx.Done():
	}
	b.mu.Lock()
	if !c.sent {
		b.queue = slices.DeleteFunc(b.queue, func(q *call) bool { return q == c })
	}
	b.mu.Unlock()
	select {
	case <-c.done: // answered meanwhile: the reply is known
		return c.cmd
	default:
	}
	cmd := redis.NewCmd(ctx, args...)
	cmd.SetErr(ctx.Err())
	return cmd
}

// next hands the queue, if any, to a sender goroutine, after the command
// in flight was answered; else marks the batcher idle.
func (b *batcher) next() {
	b.mu.Lock()
	batch := b.takeLocked()
	if len(batch) > 0 {
		b.senders++ // in the same critical section: wait sees it
	}
	b.mu.Unlock()
	if len(batch) > 0 {
		go b.send(batch)
	}
}

// take returns the queued calls whose context has not ended, marked sent,
// and empties the queue; or, when there are none, nil, and one command
// or batch fewer is in flight. The calls whose context ended leave the
// queue unsent: their callers are returning.
func (b *batcher) take() []*call {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.takeLocked()
}

// takeLocked is take with b.mu held.
func (b *batcher) takeLocked() []*call {
	var batch []*call
	for _, c := range b.queue {
		if c.ctx.Err() == nil {
			c.sent = true
			batch = append(batch, c)
		}
	}
	clear(b.queue)
	b.queue = b.queue[:0]
	if len(batch) == 0 {
		b.busy--
	}
	return batch
}

// send sends batch, then every batch that queued up meanwhile, until the
// queue is empty.
func (b *batcher) send(batch []*call) {
	for len(batch) > 0 {
		b.exec(batch)
		batch = b.take()
	}
	b.mu.Lock()
	b.senders--
	b.gone.Broadcast()
	b.mu.Unlock()
}

// exec sends batch and hands each caller its reply: one command as
// client.Do on its own context, more as one pipeline.
func (b *batcher) exec(batch []*call) {
	if len(batch) == 1 {
		c := batch[0]
		c.cmd = b.client.Do(c.ctx, c.args...)
		close(c.done)
		return
	}
	ctx, cancel := batchContext(batch)
	pipe := b.client.Pipeline()
	for _, c := range batch {
		c.cmd = pipe.Do(c.ctx, c.args...)
	}
	pipe.Exec(ctx) // errors are per command
	cancel()
	for _, c := range batch {
		close(c.done)
	}
}

// batchContext is the context of a pipeline that carries batch: the
// values of the first call's context, and the latest deadline of the
// calls (none if one has none), so that one caller's deadline or
// cancellation does not cut short the others' commands. A caller that
// gives up before the pipeline's answer returns on its own.
func batchContext(batch []*call) (context.Context, context.CancelFunc) {
	ctx := context.WithoutCancel(batch[0].ctx)
	var latest time.Time
	for _, c := range batch {
		d, ok := c.ctx.Deadline()
		if !ok {
			return context.WithCancel(ctx)
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(ctx, latest)
}

// wait waits for the sender goroutines, if any run, to finish: at Close,
// after the driver refuses new calls. A batch in flight ends by the
// latest deadline of its callers, or the client's read timeout.
func (b *batcher) wait() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.senders > 0 {
		b.gone.Wait()
	}
}
