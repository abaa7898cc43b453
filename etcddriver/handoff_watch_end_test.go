package etcddriver_test

import (
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
	"github.com/dlock-go/dlock/internal/redistest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestQueuedAttemptAfterWatchEnded ends a queued waiter's watch (its
// connection breaks, and the revision it resumes from was compacted
// meanwhile: etcd cancels the watch), then releases the holder: the
// waiter's entry is first, so its next queued attempt must return the
// key. Its subscription's view of the queue stopped with the watch and
// cannot answer for it: a waiter answered "busy" from that view holds the
// key without knowing it, and keeps it from everyone while it tries.
// blindWaiter is a lock held by "holder" with "waiter" queued behind it
// (two queued attempts), whose watch etcd then ended: the waiter's
// connection broke, and the revision its watch resumes from was
// compacted meanwhile. Its subscription sees nothing more.
type blindWaiter struct {
	holder, waiter driver.Locker
	h              driver.Handoff
	cancel         func()
	direct         *clientv3.Client
}

func newBlindWaiter(t *testing.T, key string, ttl time.Duration) *blindWaiter {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	px := redistest.NewProxy(t, hostPort(c.Members()[0]))
	b := &blindWaiter{direct: c.Client(t)}
	b.holder = etcddriver.NewDriver(b.direct, nil)
	b.waiter = etcddriver.NewDriver(c.Client(t, "http://"+px.Addr()), nil)
	t.Cleanup(func() { b.holder.Close(); b.waiter.Close() })
	if res, err := b.holder.Acquire(ctx, driverRequest(key, "holder", ttl)); err != nil || !res.Acquired {
		t.Fatalf("holder's Acquire = %+v, %v", res, err)
	}
	b.h = b.waiter.(driver.Handoff)
	turns, cancel, err := b.h.SubscribeHandoff(ctx, key, "waiter")
	if err != nil {
		t.Fatal(err)
	}
	b.cancel = cancel
	for attempt := uint64(1); attempt <= 2; attempt++ {
		res, err := b.h.AcquireQueued(ctx, driverRequest(key, "waiter", ttl), driver.Queued{Wait: time.Minute, Attempt: attempt})
		if err != nil || res.Acquired {
			t.Fatalf("queued attempt %d = %+v, %v; want busy", attempt, res, err)
		}
	}

	px.Partition()
	// Compacted past the revision the watch resumes from (the one after
	// the last it saw).
	var put *clientv3.PutResponse
	for range 2 {
		if put, err = b.direct.Put(ctx, "unrelated", "x"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.direct.Compact(ctx, put.Header.Revision); err != nil {
		t.Fatal(err)
	}
	px.Heal()
	select {
	case turn := <-turns:
		if turn.Granted {
			t.Fatalf("Turn when the watch ended = %+v; want a plain wake-up", turn)
		}
	case <-ctx.Done():
		t.Fatal("no wake-up when the watch was compacted away")
	}
	return b
}

func TestQueuedAttemptAfterWatchEnded(t *testing.T) {
	ctx := testCtx(t)
	const key, ttl = "fifo/watch-ended", 30 * time.Second
	b := newBlindWaiter(t, key, ttl)
	defer b.cancel()
	if err := b.holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	res, err := b.h.AcquireQueued(ctx, driverRequest(key, "waiter", ttl), driver.Queued{Wait: time.Minute, Attempt: 3})
	if err != nil || !res.Acquired {
		t.Fatalf("queued attempt after the holder released = %+v, %v; want the key (the waiter's entry is first)", res, err)
	}
	if hd, held, err := b.holder.(driver.Inspector).Inspect(ctx, key); err != nil || !held || hd.Fence != res.Fence {
		t.Errorf("Inspect = %+v, %v, %v; want the waiter's fence %d", hd, held, err, res.Fence)
	}
	if err := b.waiter.Release(ctx, key, "waiter"); err != nil {
		t.Errorf("waiter's Release = %v", err)
	}
}

// TestLastPlainAttemptKeepsEntryAtCancel makes a queued waiter's last
// attempt (Wait 0: its retries ran out, so it is a plain Acquire, as
// dlock sends it) after the holder released, while its subscription
// sees nothing: the attempt returns the key, and the cancel that follows
// (dlock cancels the subscription as it returns the lease) must not
// delete the entry of the key's holder, which would free the key under
// a valid lease: two holders.
func TestLastPlainAttemptKeepsEntryAtCancel(t *testing.T) {
	ctx := testCtx(t)
	const key, ttl = "fifo/last-plain", 30 * time.Second
	b := newBlindWaiter(t, key, ttl)
	if err := b.holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	res, err := b.h.AcquireQueued(ctx, driverRequest(key, "waiter", ttl), driver.Queued{Attempt: 3})
	if err != nil || !res.Acquired {
		t.Fatalf("last attempt after the holder released = %+v, %v; want the key", res, err)
	}
	b.cancel()
	if hd, held, err := b.holder.(driver.Inspector).Inspect(ctx, key); err != nil || !held || hd.Fence != res.Fence {
		t.Errorf("Inspect after the waiter's cancel = %+v, %v, %v; want the waiter holding with fence %d", hd, held, err, res.Fence)
	}
	if other, err := b.holder.Acquire(ctx, driverRequest(key, "other", ttl)); err != nil || other.Acquired {
		t.Errorf("another token's Acquire while the waiter holds = %+v, %v; want busy", other, err)
	}
	if err := b.waiter.Release(ctx, key, "waiter"); err != nil {
		t.Errorf("waiter's Release = %v", err)
	}
}
