package redisdriver_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// lossyWaiterWith is lossyWaiter with Locker options: its pub/sub
// connections go through px, its commands directly.
func lossyWaiterWith(t *testing.T, s *redistest.Server, px *redistest.Proxy, lo *dlock.Options) *dlock.Locker {
	t.Helper()
	var viaProxy atomic.Bool
	o := s.Options()
	o.PoolSize = 1
	o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if viaProxy.Load() {
			addr = px.Addr()
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(testCtx(t)).Err(); err != nil {
		t.Fatal(err)
	}
	viaProxy.Store(true)
	l := dlock.New(redisdriver.NewDriver(c, nil), lo)
	t.Cleanup(func() { l.Close() })
	return l
}

// TestHandoffCloseWithPartitionedPubSub: a release grants the key to a
// waiter that the server counts as listening, but whose pub/sub
// connection is partitioned (the grant's message never comes), and the
// waiter's Locker is then closed, with a ReleaseTimeout (300 ms) shorter
// than the read timeout that bounds the wait for the UNSUBSCRIBE's
// confirmation (2 s). When Close returns, the waiter's token must not hold
// the key: nobody would ever release it, and everyone is locked out of it
// for the TTL.
func TestHandoffCloseWithPartitionedPubSub(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	const owner = "closed waiter"
	px := redistest.NewProxy(t, s.Addr())
	waiter := lossyWaiterWith(t, s, px, &dlock.Options{ReleaseTimeout: 300 * time.Millisecond})
	ctx := testCtx(t)
	key := uniqueKey("handoff/close-partition/")
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	got := goAcquire(ctx, waiter, key, &dlock.LeaseOptions{TTL: 30 * time.Second, Owner: owner, Retry: noPolling})
	waitAttemptQueued(t, admin, key)
	px.Partition()
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	if o := ownerOf(t, ctx, admin, key); o != owner {
		t.Fatalf("the release granted the key to %q, want the partitioned waiter", o)
	}
	start := time.Now()
	cerr := waiter.Close()
	t.Logf("Close returned after %v: %v", time.Since(start), cerr)
	a := <-got
	if a.err == nil {
		t.Fatal("Acquire returned a lease")
	}
	t.Logf("Acquire: %v", a.err)
	if o := ownerOf(t, ctx, admin, key); o == owner {
		t.Fatalf("after Close returned, the closed waiter's token still holds the key (PTTL %v)", admin.PTTL(ctx, "dlock:{"+key+"}").Val())
	}
}
