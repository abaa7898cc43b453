package etcddriver_test

import (
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
	"github.com/dlock-go/dlock/internal/redistest"
)

// TestProxyLatencyThenPartition puts a TCP proxy (toxiproxy) between a
// holder and etcd. With 150 ms added to every reply, the holder's lease
// (TTL 2s) is renewed and kept. Then the proxy partitions the holder: its
// lease must end at its local deadline, before etcd frees the key, and a
// waiter on a direct client gets the key once etcd has, woken by the
// expiry, with a greater fence.
func TestProxyLatencyThenPartition(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	px := redistest.NewProxy(t, hostPort(c.Members()[0]))
	holder := etcddriver.New(c.Client(t, "http://"+px.Addr()), &etcddriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: faultTTL}}})
	defer holder.Close()
	waiter := etcddriver.New(c.Client(t), &etcddriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: faultTTL}}})
	defer waiter.Close()
	const key = "proxy/latency-partition"

	px.Latency(150 * time.Millisecond)
	lease, err := holder.Acquire(ctx, key, nil)
	if err != nil {
		t.Fatalf("Acquire through 150 ms of latency = %v", err)
	}
	time.Sleep(2 * faultTTL)
	if err := lease.Err(); err != nil {
		t.Fatalf("lease with TTL %v lost after %v of renewals through 150 ms of latency: %v", faultTTL, 2*faultTTL, err)
	}
	h, ok, err := soleHolder(waiter.Holders(ctx, key))
	if err != nil || !ok || h.Fence != lease.Fence() {
		t.Errorf("Holder = %+v, %v, %v; want the holder's fence %d", h, ok, err, lease.Fence())
	}

	px.Partition()
	defer px.Heal()
	got, err := waiter.Acquire(ctx, key, nil)
	if err != nil {
		t.Fatalf("waiter's Acquire while the holder is partitioned = %v; want the key at the holder's expiry", err)
	}
	at := time.Now()
	defer got.Release(ctx)
	if lease.Err() == nil {
		t.Errorf("the partitioned holder's lease is still valid when the waiter got the key: two valid leases")
	}
	if vu := lease.ValidUntil(); !vu.Before(at) {
		t.Errorf("the partitioned holder's local deadline %v is not before the waiter's grant at %v", vu.Format(time.StampMicro), at.Format(time.StampMicro))
	}
	if got.Fence() <= lease.Fence() {
		t.Errorf("fence %d after the partitioned holder's %d: fences must increase", got.Fence(), lease.Fence())
	}
	if wake := at.Sub(lease.ValidUntil()); wake > faultTTL {
		t.Errorf("the waiter got the key %v after the holder's local deadline; want it soon after etcd's expiry", wake)
	}
	t.Logf("the waiter got the key %v after the partitioned holder's local deadline", at.Sub(lease.ValidUntil()).Round(time.Millisecond))
}
