package etcddriver_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// counted is a client of c that counts the requests it sends: unary
// calls, and messages sent on streams (keep-alives, watch requests).
func counted(t *testing.T, c *etcdtest.Cluster, n *atomic.Int64) *clientv3.Client {
	t.Helper()
	cfg := c.Config()
	cfg.DialOptions = append(cfg.DialOptions,
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			n.Add(1)
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			s, err := streamer(ctx, desc, cc, method, opts...)
			return countedStream{s, n}, err
		}))
	cl, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

type countedStream struct {
	grpc.ClientStream
	n *atomic.Int64
}

func (s countedStream) SendMsg(m any) error {
	s.n.Add(1)
	return s.ClientStream.SendMsg(m)
}

// queue is a lock with a holder and waiters that queued one by one.
type queue struct {
	t       *testing.T
	c       *etcdtest.Cluster
	key     string
	holder  *dlock.Lease
	reqs    atomic.Int64 // requests sent by the waiters' drivers
	mu      sync.Mutex
	order   []int // waiters, in the order they got the key
	results sync.WaitGroup
	errs    []error
}

// patient returns the options of a waiter that never retries on its own
// during a test (only a release moves it), and reports its busy answers
// on busy.
func patient(busy chan<- struct{}) *etcddriver.Options {
	return &etcddriver.Options{Lock: &dlock.Options{
		LeaseOptions: dlock.LeaseOptions{TTL: 30 * time.Second, Retry: dlock.ExponentialBackoff(time.Minute, time.Minute)},
		Observer: func(_ context.Context, e dlock.Event) {
			if e.Kind == dlock.EventBusy {
				busy <- struct{}{}
			}
		},
	}}
}

func newQueue(t *testing.T, c *etcdtest.Cluster, key string) *queue {
	q := &queue{t: t, c: c, key: key}
	l := etcddriver.New(c.Client(t), patient(make(chan struct{}, 8)))
	t.Cleanup(func() { l.Close() })
	var err error
	if q.holder, err = l.Acquire(testCtx(t), key, nil); err != nil {
		t.Fatal(err)
	}
	return q
}

// wait starts waiter i, whose Acquire ends with ctx, and returns once it
// waits: its second busy answer is that of the attempt after it
// subscribed. It keeps the key for hold and releases it.
func (q *queue) wait(ctx context.Context, i int, hold time.Duration) {
	busy := make(chan struct{}, 8)
	l := etcddriver.New(counted(q.t, q.c, &q.reqs), patient(busy))
	q.t.Cleanup(func() { l.Close() })
	q.results.Go(func() {
		lease, err := l.Acquire(ctx, q.key, nil)
		q.mu.Lock()
		if err != nil {
			q.errs = append(q.errs, err)
			q.mu.Unlock()
			return
		}
		q.order = append(q.order, i)
		q.mu.Unlock()
		time.Sleep(hold) // the work the lease protects
		if err := lease.Release(context.Background()); err != nil {
			q.t.Errorf("waiter %d: Release = %v", i, err)
		}
	})
	<-busy
	<-busy
}

// TestReleaseWakesOnlyTheNextWaiter queues waiters one at a time behind a
// holder, then releases: each release must hand the key to the next
// waiter in arrival order, and cost the waiters O(1) requests, not one
// attempt by every waiter left.
func TestReleaseWakesOnlyTheNextWaiter(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	const waiters = 6
	q := newQueue(t, c, "fifo/k")
	for i := range waiters {
		q.wait(ctx, i, 0)
	}
	before := q.reqs.Load()
	if err := q.holder.Release(ctx); err != nil {
		t.Fatal(err)
	}
	q.results.Wait()
	sent := q.reqs.Load() - before
	if len(q.errs) > 0 {
		t.Fatalf("waiters failed: %v", q.errs)
	}
	for i, w := range q.order {
		if w != i {
			t.Errorf("the waiters got the key in the order %v; want their arrival order", q.order)
			break
		}
	}
	// Each waiter releases (a delete) and ends its watch: 2 requests;
	// 4 each leaves room for a retry, far from one attempt (3 requests)
	// by every waiter left at every release (63 for 6).
	if sent > 4*waiters {
		t.Errorf("the waiters sent %d requests for %d releases; want at most %d: a release must wake only the next waiter", sent, waiters, 4*waiters)
	}
	t.Logf("%d requests by the waiters for %d handoffs", sent, waiters)
}

// TestCancelledWaiterDoesNotStallQueue queues three waiters; the middle
// one gives up. The last must get the key right after the first releases
// it, not at the TTL of the middle one's entry.
func TestCancelledWaiterDoesNotStallQueue(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	q := newQueue(t, c, "fifo/cancel")
	q.wait(ctx, 0, 0)
	gone, giveUp := context.WithCancel(ctx)
	q.wait(gone, 1, 0)
	q.wait(ctx, 2, 0)
	giveUp()
	start := time.Now()
	if err := q.holder.Release(ctx); err != nil {
		t.Fatal(err)
	}
	q.results.Wait()
	took := time.Since(start)
	if len(q.errs) != 1 || !errors.Is(q.errs[0], context.Canceled) {
		t.Errorf("errors %v; want the middle waiter's cancellation alone", q.errs)
	}
	if len(q.order) != 2 || q.order[0] != 0 || q.order[1] != 2 {
		t.Errorf("the waiters got the key in the order %v; want [0 2]", q.order)
	}
	// The middle entry's lease has 30 s; the waiters never retry before
	// a minute.
	if took > 5*time.Second {
		t.Errorf("the last waiter got the key %v after the release; want it at once", took)
	}
}

// TestHandoffCancelDeleteFails gives up a queued waiter while its
// entry's delete cannot reach etcd: cancel must leave a Turn with Granted
// and Attempt 0 (the driver cannot tell whether the entry became the
// holder), and the caller's Release, as dlock makes it then, must delete
// the entry, so that the key is free once the holder releases it.
func TestHandoffCancelDeleteFails(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	lc := newLossy(t, c)
	holder := etcddriver.NewDriver(c.Client(t), nil)
	waiter := etcddriver.NewDriver(lc.Client, nil)
	t.Cleanup(func() { holder.Close(); waiter.Close() })
	const key, ttl = "fifo/cancel-lost", 30 * time.Second
	if res, err := holder.Acquire(ctx, driverRequest(key, "holder", ttl)); err != nil || !res.Acquired {
		t.Fatalf("holder's Acquire = %+v, %v", res, err)
	}
	h := waiter.(driver.Handoff)
	turns, cancel, err := h.SubscribeHandoff(ctx, key, "waiter")
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.AcquireQueued(ctx, driverRequest(key, "waiter", ttl), driver.Queued{Wait: time.Minute, Attempt: 1})
	if err != nil || res.Acquired {
		t.Fatalf("queued attempt = %+v, %v; want busy", res, err)
	}
	lc.lose(true, methodTxn)
	cancel()
	lc.lose(false)
	select {
	case turn := <-turns:
		if !turn.Granted || turn.Attempt != 0 {
			t.Errorf("Turn after a cancel whose delete failed = %+v; want Granted, Attempt 0", turn)
		}
	default:
		t.Fatal("no Turn after a cancel whose delete failed; want Granted, Attempt 0")
	}
	if err := waiter.Release(ctx, key, "waiter"); !errors.Is(err, driver.ErrNotHeld) {
		t.Errorf("Release of the waiter's entry = %v; want ErrNotHeld (it was not first)", err)
	}
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	if _, held, err := holder.(driver.Inspector).Inspect(ctx, key); err != nil || held {
		t.Errorf("Inspect after both releases = %v, %v; want the key free", held, err)
	}
}
