package etcddriver_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// holdback is a client of an etcd cluster that can hold the next call of
// a method back: the caller gets an error at once, as when its deadline
// passed or its connection broke with the request on its way, and the
// request goes out only when the test lets it (a request stuck in a slow
// link to one member, sent on by the network after later requests went
// to another member).
type holdback struct {
	*clientv3.Client
	mu     sync.Mutex
	method string // the method whose next call is held back
	block  bool   // the held call fails when its context ends, not at once
	held   func() // sends the held call
}

func newHoldback(t *testing.T, c *etcdtest.Cluster) *holdback {
	t.Helper()
	h := &holdback{}
	cfg := c.Config()
	cfg.DialOptions = append(cfg.DialOptions, grpc.WithChainUnaryInterceptor(h.intercept))
	cl, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	h.Client = cl
	return h
}

// holdNext holds the next call of method back; if block, its caller
// waits for its context to end, as for a reply that does not come.
func (h *holdback) holdNext(method string, block bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.method, h.block = method, block
}

// sendHeld sends the call held back, and waits for etcd's answer.
func (h *holdback) sendHeld(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	send := h.held
	h.held = nil
	h.mu.Unlock()
	if send == nil {
		t.Fatal("no call was held back")
	}
	send()
}

func (h *holdback) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	h.mu.Lock()
	if method != h.method {
		h.mu.Unlock()
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	h.method = ""
	h.held = func() { invoker(context.Background(), method, req, reply, cc, opts...) }
	block := h.block
	h.mu.Unlock()
	if block {
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	}
	return status.Error(codes.Unavailable, "transport is closing (holdback test client)")
}

// TestLateReleaseDeleteSparesNextTokensEntry releases a grant whose
// first delete is held back on its way (its outcome unknown to the
// caller, which then releases again, as dlock's Lease.Release does when
// its caller gave up): the second release frees the key, and the driver
// gives the entry's name to the next token, which acquires the key. The
// first delete landing then must not delete that token's entry: the key
// must stay held by it (another token's Acquire busy, its Refresh ok).
//
// RefreshBetween refreshes the token between its two releases (the
// driver then finds the token's entry under its old name again).
func TestLateReleaseDeleteSparesNextTokensEntry(t *testing.T) {
	c := etcdtest.Start(t, 1)
	for _, refresh := range []bool{false, true} {
		name := "ReleaseTwice"
		if refresh {
			name = "RefreshBetween"
		}
		t.Run(name, func(t *testing.T) { testLateReleaseDelete(t, c, refresh) })
	}
}

func testLateReleaseDelete(t *testing.T, c *etcdtest.Cluster, refresh bool) {
	ctx := testCtx(t)
	hb := newHoldback(t, c)
	d := etcddriver.NewDriver(hb.Client, nil)
	other := etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d.Close(); other.Close() })
	key, ttl := "attack/late-delete/"+t.Name(), 30*time.Second

	if res, err := d.Acquire(ctx, driverRequest(key, "a", ttl)); err != nil || !res.Acquired {
		t.Fatalf("Acquire(a) = %+v, %v", res, err)
	}
	hb.holdNext(methodDelete, false)
	if err := d.Release(ctx, key, "a"); !driver.OutcomeUnknown(err) {
		t.Fatalf("Release(a) with its delete held back = %v; want an unknown outcome", err)
	}
	if refresh {
		if err := d.Refresh(ctx, key, "a", ttl); err != nil {
			t.Fatalf("Refresh(a) after its release's unknown outcome = %v", err)
		}
	}
	if err := d.Release(ctx, key, "a"); err != nil {
		t.Fatalf("Release(a) again = %v", err)
	}
	b, err := d.Acquire(ctx, driverRequest(key, "b", ttl))
	if err != nil || !b.Acquired {
		t.Fatalf("Acquire(b) = %+v, %v", b, err)
	}
	hb.sendHeld(t)

	if res, err := other.Acquire(ctx, driverRequest(key, "c", ttl)); err != nil || res.Acquired {
		t.Errorf("Acquire(c) while b holds, after a's late delete landed = %+v, %v; want busy: two holders", res, err)
	}
	if err := d.Refresh(ctx, key, "b", ttl); err != nil {
		t.Errorf("Refresh(b) = %v", err)
	}
	r, err := etcddriver.TokenEntry(ctx, c.Client(t), etcddriver.DefaultPrefix, key, "b")
	if err != nil || len(r.Kvs) != 1 || r.Kvs[0].CreateRevision != int64(b.Fence) {
		t.Errorf("b's entry after a's late delete = %v, %v; want it, fence %d", r, err, b.Fence)
	}
}

// TestLateLeaseReleaseSparesNextLease is the hazard of
// TestLateReleaseDeleteSparesNextTokensEntry through dlock: a
// Lease.Release whose caller gives up while its delete is on its way
// frees the key with a second release of its own, and the Locker's next
// lease takes the key under the same entry name; the first delete
// landing then must leave that lease's key held.
func TestLateLeaseReleaseSparesNextLease(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	hb := newHoldback(t, c)
	l := etcddriver.New(hb.Client, nil)
	other := etcddriver.New(c.Client(t), nil)
	t.Cleanup(func() { l.Close(); other.Close() })
	const key = "attack/late-lease-release"

	a, err := l.TryAcquire(ctx, key, nil)
	if err != nil {
		t.Fatalf("TryAcquire(a) = %v", err)
	}
	hb.holdNext(methodDelete, true)
	rctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err = a.Release(rctx)
	cancel()
	if err != nil {
		t.Fatalf("Release(a) given up while its delete was on its way = %v; want nil (freed by a second release)", err)
	}
	b, err := l.TryAcquire(ctx, key, nil)
	if err != nil {
		t.Fatalf("TryAcquire(b) = %v", err)
	}
	defer b.Release(ctx)
	hb.sendHeld(t)
	if got, err := other.TryAcquire(ctx, key, nil); err == nil {
		got.Release(ctx)
		t.Errorf("another Locker's TryAcquire while b holds, after a's late delete landed, got the key (fence %d after b's %d): two holders", got.Fence(), b.Fence())
	}
}
