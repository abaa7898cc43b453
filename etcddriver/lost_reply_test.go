package etcddriver_test

import (
	"context"
	"errors"
	"fmt"
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
	methodDelete = "/etcdserverpb.KV/DeleteRange"
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
	// late, if set, holds a call of a lost method that was not sent:
	// it goes out beside the next call of any method (just before it,
	// or just after its answer, as lateFirst says), as a request delayed
	// on its way lands after later ones.
	late      func()
	delay     bool
	lateFirst bool
}

func newLossy(t *testing.T, c *etcdtest.Cluster) *lossy {
	t.Helper()
	l := &lossy{lost: map[string]bool{}}
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

// delayNext makes the next call of method fail at once, unsent, and go
// out beside the following call (of any method): just before it if
// first, else just after its answer.
func (l *lossy) delayNext(method string, first bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lost, l.unsent, l.delay, l.lateFirst = map[string]bool{method: true}, true, true, first
}

func (l *lossy) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	l.mu.Lock()
	lose, unsent, delay, late, first := l.lost[method], l.unsent, l.delay, l.late, l.lateFirst
	if lose {
		if delay {
			l.lost, l.delay = map[string]bool{}, false
			l.late = func() { invoker(context.Background(), method, req, reply, cc, opts...) }
		}
	}
	if !lose && late != nil {
		l.late = nil
	}
	l.mu.Unlock()
	if !lose {
		if late != nil && first {
			late()
		}
		err := invoker(ctx, method, req, reply, cc, opts...)
		if late != nil && !first {
			late()
		}
		return err
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

// TestAcquireRetriedAfterLostReply retries an Acquire whose transaction
// was applied but whose reply was lost, with the same token, as a caller
// that does not know the outcome may: the retry must return the key with
// the fence of the first attempt's put (the driver contract: a repeated
// request with the same token while the key is held returns the same
// fence), and one Release must free the key, lease and all.
func TestAcquireRetriedAfterLostReply(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	lc := newLossy(t, c)
	d := etcddriver.NewDriver(lc.Client, nil)
	t.Cleanup(func() { d.Close() })
	cl := c.Client(t)
	const key, tok, ttl = "lost/retry", "the-token", 30 * time.Second

	lc.lose(false, methodTxn)
	_, err := d.Acquire(ctx, driverRequest(key, tok, ttl))
	lc.lose(false)
	if !driver.OutcomeUnknown(err) {
		t.Fatalf("Acquire with its reply lost = %v; want an unknown outcome", err)
	}
	r, err := etcddriver.TokenEntry(ctx, cl, etcddriver.DefaultPrefix, key, tok)
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("Get = %v, %v; want the key put by the first attempt", r, err)
	}
	put := r.Kvs[0]
	res, err := d.Acquire(ctx, driverRequest(key, tok, ttl))
	if err != nil || !res.Acquired {
		t.Fatalf("retried Acquire = %+v, %v; want the key", res, err)
	}
	if res.Fence != uint64(put.CreateRevision) {
		t.Errorf("retried Acquire fence %d; want %d, the first attempt's put", res.Fence, put.CreateRevision)
	}
	again, err := d.Acquire(ctx, driverRequest(key, tok, ttl))
	if err != nil || !again.Acquired || again.Fence != res.Fence {
		t.Errorf("third Acquire of the same token = %+v, %v; want fence %d", again, err, res.Fence)
	}
	if err := d.Release(ctx, key, tok); err != nil {
		t.Fatalf("Release = %v", err)
	}
	if r, err := etcddriver.TokenEntry(ctx, cl, etcddriver.DefaultPrefix, key, tok); err != nil || len(r.Kvs) != 0 {
		t.Errorf("the key after Release = %v, %v; want it gone", r, err)
	}
}

// TestReleaseLostReplyRetried loses the reply of a Release's delete
// (applied: the key is deleted) and retries it, as dlock's Lease.Release
// may: the retry must not report success for a key it did not free now
// (ErrNotHeld, or nil), must not touch a key another token took
// meanwhile, and the key must be free or the other's.
func TestReleaseLostReplyRetried(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	lc := newLossy(t, c)
	d := etcddriver.NewDriver(lc.Client, nil)
	other := etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d.Close(); other.Close() })
	const key, ttl = "lost/release", 30 * time.Second
	if res, err := d.Acquire(ctx, driverRequest(key, "first", ttl)); err != nil || !res.Acquired {
		t.Fatalf("Acquire = %+v, %v", res, err)
	}
	lc.lose(false, methodDelete)
	err := d.Release(ctx, key, "first")
	lc.lose(false)
	if !driver.OutcomeUnknown(err) {
		t.Fatalf("Release with its reply lost = %v; want an unknown outcome", err)
	}
	taken, err := other.Acquire(ctx, driverRequest(key, "second", ttl))
	if err != nil || !taken.Acquired {
		t.Fatalf("another token's Acquire after the (applied) release = %+v, %v; want the key", taken, err)
	}
	if err := d.Release(ctx, key, "first"); err != nil && !errors.Is(err, driver.ErrNotHeld) {
		t.Errorf("retried Release = %v; want nil or ErrNotHeld", err)
	}
	h, ok, err := other.(driver.Inspector).Inspect(ctx, key)
	if err != nil || !ok || h.Fence != taken.Fence {
		t.Errorf("the other token's key after the retried Release: %+v, %v, %v; want held with fence %d", h, ok, err, taken.Fence)
	}
	// The first grant's lease must not be reused while its Release's
	// outcome was unknown to the driver, and a new grant of d works.
	if res, err := d.Acquire(ctx, driverRequest("lost/release-next", "third", ttl)); err != nil || !res.Acquired {
		t.Errorf("next Acquire = %+v, %v", res, err)
	}
}

// TestReleaseOfLatePut undoes an attempt whose transaction is delayed
// on its way and lands during the Release: just before its first
// request, or just after the first is answered. Whatever the Release
// does, it must report success exactly if the token held the key (the
// attempt's put is in etcd's history with the attempt's lease) and the
// key must be free after it: a check of the history would otherwise find
// the token holding a key that its one Release said it did not hold.
func TestReleaseOfLatePut(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	lc := newLossy(t, c)
	d := etcddriver.NewDriver(lc.Client, nil)
	t.Cleanup(func() { d.Close() })
	cl := c.Client(t)
	for _, first := range []bool{true, false} {
		t.Run(fmt.Sprint("Before=", first), func(t *testing.T) {
			key, tok := fmt.Sprint("lost/late-put-", first), fmt.Sprint("late-", first)
			start, err := cl.Get(ctx, "any")
			if err != nil {
				t.Fatal(err)
			}
			lc.delayNext(methodTxn, first)
			_, err = d.Acquire(ctx, driverRequest(key, tok, 30*time.Second))
			if !driver.OutcomeUnknown(err) {
				t.Fatalf("Acquire whose transaction is held back = %v; want an unknown outcome", err)
			}
			relErr := d.Release(ctx, key, tok)
			end, err := etcddriver.TokenEntry(ctx, cl, etcddriver.DefaultPrefix, key, tok)
			if err != nil {
				t.Fatal(err)
			}
			if len(end.Kvs) != 0 {
				t.Errorf("the key after the Release: %v; want it free", end.Kvs)
			}
			// Was the key ever put since the start? (A fresh cluster: a
			// few revisions to read.)
			put := false
			for rev := start.Header.Revision + 1; rev <= end.Header.Revision; rev++ {
				r, err := etcddriver.TokenEntry(ctx, cl, etcddriver.DefaultPrefix, key, tok, clientv3.WithRev(rev))
				if err != nil {
					t.Fatal(err)
				}
				put = put || len(r.Kvs) > 0
			}
			switch {
			case put && relErr != nil:
				t.Errorf("the attempt's put landed and the Release freed it, yet the Release = %v; want success", relErr)
			case !put && relErr == nil:
				t.Errorf("the attempt's put never landed, yet the Release succeeded; want ErrNotHeld")
			case !put && !errors.Is(relErr, driver.ErrNotHeld):
				t.Errorf("Release = %v; want ErrNotHeld", relErr)
			}
			t.Logf("put landed: %v; Release = %v", put, relErr)
		})
	}
}
