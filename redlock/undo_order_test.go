package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/dlock-go/dlock/redlock"
	"github.com/redis/go-redis/v9"
)

// delayedRequest delays each Acquire request on its way to the node, and
// applies it even if the caller gave up meanwhile, as a request that sits
// in a slow proxy or a retransmitted packet reaches the server whatever
// the client does after sending it. The call itself returns when its
// context ends, as a go-redis call does at its deadline.
type delayedRequest struct {
	driver.Locker
	delay  time.Duration
	landed *sync.WaitGroup // the delayed requests, applied or not yet
}

func (d delayedRequest) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	type reply struct {
		res driver.Result
		err error
	}
	out := make(chan reply, 1)
	d.landed.Go(func() {
		time.Sleep(d.delay)
		res, err := d.Locker.Acquire(context.WithoutCancel(ctx), req)
		out <- reply{res, err}
	})
	select {
	case r := <-out:
		return r.res, r.err
	case <-ctx.Done():
		return driver.Result{}, fmt.Errorf("acquire: %w", ctx.Err())
	}
}

// TestUndoNeverOvertakesAcquire: an acquire whose caller gives up while
// its requests are on their way is undone on each node only after that
// node's acquire, never before: on three real nodes whose requests land
// 50ms after they were sent, a TryAcquire with a 5ms context leaves no
// node held. The undo went out on another connection at once, answered
// "not held", and the acquires landed afterwards and held the key on every
// node for the TTL.
func TestUndoNeverOvertakesAcquire(t *testing.T) {
	t.Parallel()
	nodes := startRedis(t, 3)
	var landed sync.WaitGroup
	var ds []driver.Locker
	for _, c := range nodes.clients(t) {
		ds = append(ds, delayedRequest{redisdriver.NewDriver(c, nil), 50 * time.Millisecond, &landed})
	}
	l, err := redlock.New(ds, &redlock.Options{NodeTimeout: time.Second, DisableFencing: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
	defer cancel()
	if lease, err := l.TryAcquire(ctx, "undo-order", &dlock.LeaseOptions{TTL: time.Minute}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("TryAcquire with a 5ms context, requests landing after 50ms = %v, %v; want DeadlineExceeded", lease, err)
	}
	landed.Wait()
	if err := l.Close(); err != nil { // waits for the undo still running
		t.Fatal(err)
	}
	for i := range nodes {
		if h, held := nodes.holds(t, i, "undo-order"); held {
			t.Errorf("node %d held by %+v after the attempt gave up and its Locker closed: the undo overtook the acquire", i, h)
		}
	}
}

// TestQuorumCallsAtMajoritySpeed: with one node of three answering 1s
// late (a proxy's latency on its replies), Acquire, Refresh and Release
// each return with the majority's answers, and the slow node's late grant
// is released: after Release and Close no node holds the key. Refresh
// waited for every node, here the node timeout. A busy attempt waits for
// its undo on the slow node, which goes out once that node answered (see
// abandon): two of its round trips, within the node timeout.
func TestQuorumCallsAtMajoritySpeed(t *testing.T) {
	t.Parallel()
	nodes := startRedis(t, 3)
	clients, proxies := nodes.proxied(t)
	// Below the clients' read timeout (2s), so that each slow call
	// answers; and far below the node timeout, since the slow node's
	// client sends a request only after earlier replies (a new
	// connection's handshake, redisdriver's batches in flight), so a
	// late grant and its release may take a few round trips.
	const slow = time.Second
	warm(t, clients[2], 4)
	proxies[2].Latency(slow)
	opts := &redlock.Options{NodeTimeout: 5 * time.Second, DisableFencing: true}
	d := nodes.driverOver(t, clients, opts)
	other := nodes.driverOver(t, nodes.clients(t), opts)
	defer other.Close()
	ctx := t.Context()
	const bound = slow / 4 // far below the slow node's delay, generous for a loaded machine
	quick := func(what string, op func() error) error {
		t.Helper()
		start := time.Now()
		err := op()
		if took := time.Since(start); took >= bound {
			t.Errorf("%s took %v with one node %v slow; want the majority's answer, under %v", what, took, slow, bound)
		}
		return err
	}
	req := driver.Request{Key: "majority-speed", Token: rand(), TTL: time.Minute}
	var res driver.Result
	if err := quick("Acquire", func() (err error) { res, err = d.Acquire(ctx, req); return err }); err != nil || !res.Acquired {
		t.Fatalf("Acquire = %+v, %v", res, err)
	}
	// The key is held on the two fast nodes; another token is busy.
	busyReq := driver.Request{Key: req.Key, Token: rand(), TTL: time.Minute}
	start := time.Now()
	if res, err := d.Acquire(ctx, busyReq); err != nil || res.Acquired {
		t.Errorf("Acquire of a held key = %+v, %v; want busy", res, err)
	}
	if took := time.Since(start); took >= opts.NodeTimeout {
		t.Errorf("busy Acquire took %v with one node %v slow; want its undo there, within the node timeout %v", took, slow, opts.NodeTimeout)
	}
	if err := quick("Refresh", func() error { return d.Refresh(ctx, req.Key, req.Token, time.Minute) }); err != nil {
		t.Errorf("Refresh = %v", err)
	}
	if err := quick("Release", func() error { return d.Release(ctx, req.Key, req.Token) }); err != nil {
		t.Errorf("Release = %v", err)
	}
	// The slow node's release goes out once its acquire answered, and a
	// busy attempt's grant there is undone once it answered. Close waits
	// for them.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range nodes {
		if h, held := nodes.holds(t, i, req.Key); held {
			t.Errorf("node %d still held by %+v after Release and Close: a late grant must be released", i, h)
		}
	}
}

// TestCloseDuringReleaseFreesSlowNode: a Locker closed while its only
// lease's Release waits for a slow node's late grant still frees every
// node. Close waited only for Acquire calls, and ended the Release's
// calls: the lease was released and its Locker closed, yet every node
// held the key.
func TestCloseDuringReleaseFreesSlowNode(t *testing.T) {
	t.Parallel()
	nodes := startRedis(t, 3)
	clients, proxies := nodes.proxied(t)
	l, err := redlock.NewRedis(clients, &redlock.Options{NodeTimeout: 2 * time.Second, DisableFencing: true, Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}}})
	if err != nil {
		t.Fatal(err)
	}
	proxies[2].Latency(300 * time.Millisecond)
	lease, err := l.TryAcquire(t.Context(), "close-during-release", nil)
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan error, 1)
	go func() { released <- lease.Release(context.Background()) }()
	if err := l.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := <-released; err != nil && !errors.Is(err, dlock.ErrLeaseLost) {
		t.Errorf("Release = %v", err)
	}
	for i := range nodes {
		if h, held := nodes.holds(t, i, "close-during-release"); held {
			t.Errorf("node %d held by %+v after the only lease was released and its Locker closed", i, h)
		}
	}
}

// countAcquire counts the acquire requests a node receives.
type countAcquire struct {
	driver.Locker
	n *atomic.Int32
}

func (c countAcquire) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	c.n.Add(1)
	return c.Locker.Acquire(ctx, req)
}

// TestAcquireEndedContextSendsNothing: an Acquire whose context has ended
// sends nothing, since node calls do not end with the caller's context
// (see Acquire): a request sent then would have to be undone, and the
// error says the attempt needs no undo.
func TestAcquireEndedContextSendsNothing(t *testing.T) {
	c := newMemCluster(3)
	var n atomic.Int32
	var ds []driver.Locker
	for i := range 3 {
		ds = append(ds, countAcquire{c.raw(t, i), &n})
	}
	d, err := redlock.NewDriver(ds, &redlock.Options{DisableFencing: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = d.Acquire(ctx, driver.Request{Key: "k", Token: rand(), TTL: time.Minute})
	if !errors.Is(err, context.Canceled) || driver.OutcomeUnknown(err) {
		t.Errorf("Acquire with an ended context = %v; want context.Canceled, outcome known", err)
	}
	if got := n.Load(); got != 0 {
		t.Errorf("%d acquire requests sent with an ended context; want none", got)
	}
}

// warm leaves n connections of c idle in its pool, so that calls made
// after a proxy's latency is set need no handshake through it.
func warm(t *testing.T, c redis.UniversalClient, n int) {
	t.Helper()
	conns := make([]*redis.Conn, n)
	for i := range conns {
		conns[i] = c.(*redis.Client).Conn()
		if err := conns[i].Ping(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, cn := range conns {
		cn.Close()
	}
}
