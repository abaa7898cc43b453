package etcddriver_test

import (
	"context"
	"errors"
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

// Methods of etcd's gRPC API that the lossy client can lose replies of.
const (
	methodTxn    = "/etcdserverpb.KV/Txn"
	methodRevoke = "/etcdserverpb.Lease/LeaseRevoke"
)

// lossy is a client of an etcd cluster whose calls of the methods set
// with lose fail as if their reply was lost: sent and applied (or, with
// unsent, never sent), then the connection broke. It stands for a connection that
// breaks after a request went out, a reply that comes after the caller's
// deadline.
type lossy struct {
	*clientv3.Client
	mu     sync.Mutex
	lost   map[string]bool // method → lose its replies
	unsent bool            // fail before sending instead
	count  map[string]int  // calls of each method lost so far
}

func newLossy(t *testing.T, c *etcdtest.Cluster) *lossy {
	t.Helper()
	l := &lossy{lost: map[string]bool{}, count: map[string]int{}}
	cfg := c.Config()
	cfg.DialOptions = append(cfg.DialOptions, grpc.WithChainUnaryInterceptor(l.intercept))
	cl, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	l.Client = cl
	return l
}

// lose makes the calls of methods lose their replies (applied, unless
// unsent); with no methods, every call goes through again.
func (l *lossy) lose(unsent bool, methods ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lost, l.unsent = map[string]bool{}, unsent
	for _, m := range methods {
		l.lost[m] = true
	}
}

func (l *lossy) lostCalls(method string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count[method]
}

func (l *lossy) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	l.mu.Lock()
	lose, unsent := l.lost[method], l.unsent
	if lose {
		l.count[method]++
	}
	l.mu.Unlock()
	if !lose {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	if !unsent {
		if err := invoker(ctx, method, req, reply, cc, opts...); err != nil {
			return err
		}
	}
	// As gRPC reports a connection that broke under a call; the etcd
	// client does not retry a mutation on it.
	return status.Error(codes.Unavailable, "transport is closing (lossy test client)")
}

// TestReleaseAfterUnknownAcquireNotHeld undoes acquires whose outcome is
// unknown, as dlock does, with a Release of their token, when the attempt
// surely did not take the key: its transaction was applied and found the
// key held by another token, or was never sent and the key is free. The
// Release must report ErrNotHeld (the token held nothing: the driver
// contract, and what a linearizability check of the history requires),
// and must leave the other holder's key as it was.
func TestReleaseAfterUnknownAcquireNotHeld(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	lc := newLossy(t, c)
	d := etcddriver.NewDriver(lc.Client, nil)
	holder := etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d.Close(); holder.Close() })
	const ttl = 30 * time.Second

	held, err := holder.Acquire(ctx, driverRequest("unknown/held", "holder", ttl))
	if err != nil || !held.Acquired {
		t.Fatalf("holder's Acquire = %+v, %v", held, err)
	}
	for _, tc := range []struct {
		name, key string
		unsent    bool
	}{
		{"HeldByAnother", "unknown/held", false},
		{"Unsent", "unknown/free", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lc.lose(tc.unsent, methodTxn)
			_, err := d.Acquire(ctx, driverRequest(tc.key, "tok-"+tc.name, ttl))
			lc.lose(false)
			if !driver.OutcomeUnknown(err) {
				t.Fatalf("Acquire with its transaction's reply lost = %v; want an unknown outcome", err)
			}
			if err := d.Release(ctx, tc.key, "tok-"+tc.name); !errors.Is(err, driver.ErrNotHeld) {
				t.Errorf("Release of the token of an attempt that took nothing = %v; want ErrNotHeld", err)
			}
		})
	}
	h, ok, err := holder.(driver.Inspector).Inspect(ctx, "unknown/held")
	if err != nil || !ok || h.Fence != held.Fence {
		t.Errorf("the holder's key after the other token's attempt and release: %+v, %v, %v; want held with fence %d", h, ok, err, held.Fence)
	}
	if err := holder.Release(ctx, "unknown/held", "holder"); err != nil {
		t.Errorf("holder's Release = %v", err)
	}
}
