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
func TestQueuedAttemptAfterWatchEnded(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	px := redistest.NewProxy(t, hostPort(c.Members()[0]))
	direct := c.Client(t)
	holder := etcddriver.NewDriver(direct, nil)
	waiter := etcddriver.NewDriver(c.Client(t, "http://"+px.Addr()), nil)
	t.Cleanup(func() { holder.Close(); waiter.Close() })
	const key, ttl = "fifo/watch-ended", 30 * time.Second
	if res, err := holder.Acquire(ctx, driverRequest(key, "holder", ttl)); err != nil || !res.Acquired {
		t.Fatalf("holder's Acquire = %+v, %v", res, err)
	}
	h := waiter.(driver.Handoff)
	turns, cancel, err := h.SubscribeHandoff(ctx, key, "waiter")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	for attempt := uint64(1); attempt <= 2; attempt++ {
		res, err := h.AcquireQueued(ctx, driverRequest(key, "waiter", ttl), driver.Queued{Wait: time.Minute, Attempt: attempt})
		if err != nil || res.Acquired {
			t.Fatalf("queued attempt %d = %+v, %v; want busy", attempt, res, err)
		}
	}

	px.Partition()
	// Compacted past the revision the watch resumes from (the one after
	// the last it saw).
	var put *clientv3.PutResponse
	for range 2 {
		if put, err = direct.Put(ctx, "unrelated", "x"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := direct.Compact(ctx, put.Header.Revision); err != nil {
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

	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	res, err := h.AcquireQueued(ctx, driverRequest(key, "waiter", ttl), driver.Queued{Wait: time.Minute, Attempt: 3})
	if err != nil || !res.Acquired {
		t.Fatalf("queued attempt after the holder released = %+v, %v; want the key (the waiter's entry is first)", res, err)
	}
	if hd, held, err := holder.(driver.Inspector).Inspect(ctx, key); err != nil || !held || hd.Fence != res.Fence {
		t.Errorf("Inspect = %+v, %v, %v; want the waiter's fence %d", hd, held, err, res.Fence)
	}
	if err := waiter.Release(ctx, key, "waiter"); err != nil {
		t.Errorf("waiter's Release = %v", err)
	}
}
