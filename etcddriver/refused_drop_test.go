package etcddriver_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// TestRefusedDropIsUnknown: a busy AcquireSlot put the token's entry and
// drops it by revoking its lease. When etcd refuses that revoke (no
// leader), the entry stays, counting against the limit: the attempt's
// outcome is unknown to the caller, so that dlock releases the token,
// not unavailable, which says nothing was applied (dlock would then
// retry and release nothing).
func TestRefusedDropIsUnknown(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	const key, limit, ttl = "refused-drop", 1, 10 * time.Second
	holder := etcddriver.NewDriver(c.Client(t), nil).(driver.Semaphore)
	if res, err := holder.AcquireSlot(ctx, driverRequest(key, "holder", ttl), limit); err != nil || !res.Acquired {
		t.Fatalf("AcquireSlot(holder) = %+v, %v", res, err)
	}
	cfg := c.Config()
	cfg.DialOptions = append(cfg.DialOptions, grpc.WithChainUnaryInterceptor(
		func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if method == methodRevoke {
				return rpctypes.ErrGRPCNoLeader
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		}))
	cl, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	dl := etcddriver.NewDriver(cl, nil)
	t.Cleanup(func() { dl.Close() })
	res, err := dl.(driver.Semaphore).AcquireSlot(ctx, driverRequest(key, "T", ttl), limit)
	if left := entriesLeft(t, c.Client(t), key); len(left) != 2 {
		t.Fatalf("entries after the refused drop: %q, want the holder's and T's", left)
	}
	if !errors.Is(err, driver.ErrOutcomeUnknown) || errors.Is(err, driver.ErrUnavailable) {
		t.Errorf("AcquireSlot(T) whose drop etcd refused = %+v, %v; want ErrOutcomeUnknown (its entry is there), not ErrUnavailable", res, err)
	}
}
