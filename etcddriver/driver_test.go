package etcddriver_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestAcquireCancelledMidCall cancels Acquire calls at every point of
// their two round trips (the lease grant, then the transaction): each
// call either returns the key, or an error after which a Release of its
// token leaves the key free, as dlock undoes an attempt whose outcome it
// does not know. No grant is left behind to block the key for a TTL.
func TestAcquireCancelledMidCall(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	d, other := etcddriver.NewDriver(c.Client(t), nil), etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d.Close(); other.Close() })
	key := "cancel/mid-call"
	outcomes := map[string]int{}
	for i := range 150 {
		tok := fmt.Sprint("tok-", i)
		cctx, cancel := context.WithTimeout(ctx, time.Duration(i)*50*time.Microsecond)
		res, err := d.Acquire(cctx, driverRequest(key, tok, 30*time.Second))
		cancel()
		switch {
		case err == nil && res.Acquired:
			outcomes["acquired"]++
			if err := d.Release(ctx, key, tok); err != nil {
				t.Fatalf("attempt %d: Release of a grant = %v", i, err)
			}
		case err == nil:
			t.Fatalf("attempt %d: busy, but nobody else holds the key", i)
		case errors.Is(err, driver.ErrUnavailable):
			outcomes["unavailable"]++
		default:
			outcomes["unknown"]++
			if !driver.OutcomeUnknown(err) {
				t.Errorf("attempt %d: %v is neither ErrUnavailable nor an unknown outcome", i, err)
			}
			if err := d.Release(ctx, key, tok); err != nil && !errors.Is(err, driver.ErrNotHeld) {
				t.Fatalf("attempt %d: undoing Release = %v", i, err)
			}
		}
		res, err = other.Acquire(ctx, driverRequest(key, "other", 30*time.Second))
		if err != nil || !res.Acquired {
			t.Fatalf("attempt %d: the key is not free after a cancelled Acquire and the Release of its token: %+v, %v", i, res, err)
		}
		if err := other.Release(ctx, key, "other"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("outcomes: %v", outcomes)
}

// TestRefreshMovesLeaseAcrossDrivers refreshes one grant through two
// drivers with different TTLs: each moves the key to a lease of its TTL
// (revoking the other driver's remembered lease), yet both keep refreshing
// it, the fence stays, and either can release it.
func TestRefreshMovesLeaseAcrossDrivers(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	cl := c.Client(t)
	d1, d2 := etcddriver.NewDriver(c.Client(t), nil), etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d1.Close(); d2.Close() })
	key, tok := "move/k", "the-token"
	res, err := d1.Acquire(ctx, driverRequest(key, tok, 2*time.Second))
	if err != nil || !res.Acquired {
		t.Fatalf("Acquire = %+v, %v", res, err)
	}
	granted := func() int64 {
		t.Helper()
		r, err := etcddriver.TokenEntry(ctx, cl, etcddriver.DefaultPrefix, key, tok)
		if err != nil || len(r.Kvs) != 1 {
			t.Fatalf("Get = %v, %v; want the key", r, err)
		}
		if r.Kvs[0].CreateRevision != int64(res.Fence) {
			t.Errorf("create revision %d; want the fence %d: a refresh must keep it", r.Kvs[0].CreateRevision, res.Fence)
		}
		ttl, err := cl.TimeToLive(ctx, clientv3.LeaseID(r.Kvs[0].Lease))
		if err != nil {
			t.Fatal(err)
		}
		return ttl.GrantedTTL
	}
	for i, step := range []struct {
		d   driver.Locker
		ttl time.Duration
	}{{d2, 7 * time.Second}, {d1, 2 * time.Second}, {d1, 3 * time.Second}, {d2, 7 * time.Second}, {d2, 7 * time.Second}} {
		if err := step.d.Refresh(ctx, key, tok, step.ttl); err != nil {
			t.Fatalf("step %d: Refresh to %v = %v", i, step.ttl, err)
		}
		if g := granted(); g != int64(step.ttl/time.Second) {
			t.Errorf("step %d: the key's lease has TTL %d s after a Refresh to %v", i, g, step.ttl)
		}
	}
	if err := d1.Release(ctx, key, tok); err != nil {
		t.Fatalf("Release through the driver whose lease was replaced = %v", err)
	}
	if r, err := etcddriver.TokenEntry(ctx, cl, etcddriver.DefaultPrefix, key, tok); err != nil || len(r.Kvs) != 0 {
		t.Errorf("the key after Release = %v, %v; want it gone", r, err)
	}
	if err := d2.Refresh(ctx, key, tok, 7*time.Second); !errors.Is(err, driver.ErrNotHeld) {
		t.Errorf("Refresh after Release = %v; want ErrNotHeld", err)
	}
}

// TestBusyAttemptLeaseRenewedForNext checks the lease a busy attempt
// leaves for the token's next attempt: the next attempt, made most of a
// TTL later, renews it before it puts the key, so the key is held for a
// whole TTL from that attempt, not from the busy one.
func TestBusyAttemptLeaseRenewedForNext(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	cl := c.Client(t)
	d, holder := etcddriver.NewDriver(c.Client(t), nil), etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d.Close(); holder.Close() })
	// The spare lease is kept until a second before its expiry: the
	// next attempt comes 60% of the TTL later, when it is still used.
	const key, ttl = "spare/k", 3 * time.Second
	if res, err := holder.Acquire(ctx, driverRequest(key, "holder", 30*time.Second)); err != nil || !res.Acquired {
		t.Fatalf("holder's Acquire = %+v, %v", res, err)
	}
	busy, err := d.Acquire(ctx, driverRequest(key, "waiter", ttl))
	if err != nil || busy.Acquired {
		t.Fatalf("waiter's first Acquire = %+v, %v; want busy", busy, err)
	}
	time.Sleep(ttl * 6 / 10)
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	res, err := d.Acquire(ctx, driverRequest(key, "waiter", ttl))
	if err != nil || !res.Acquired {
		t.Fatalf("waiter's Acquire after the release = %+v, %v; want the key", res, err)
	}
	r, err := etcddriver.TokenEntry(ctx, cl, etcddriver.DefaultPrefix, key, "waiter")
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("Get = %v, %v", r, err)
	}
	left, err := cl.TimeToLive(ctx, clientv3.LeaseID(r.Kvs[0].Lease))
	if err != nil {
		t.Fatal(err)
	}
	// Whole seconds, rounded down: about 2.99 s left reads 2, and the
	// busy attempt's lease unrenewed (about 1.2 s) would read 1.
	if left.TTL < int64(ttl/time.Second)-1 {
		t.Errorf("the grant's lease has %d s left right after the grant; want about its TTL, %v", left.TTL, ttl)
	}
	if err := d.Release(ctx, key, "waiter"); err != nil {
		t.Errorf("Release = %v", err)
	}
}

// TestReleasedLeaseReusedRenewed checks the lease a release leaves to the
// driver's next attempt: an acquire of another key reuses it, renews it
// first (the key is held for a whole TTL from that acquire, not from the
// first grant), and a Release of the first grant's token does not touch
// the second grant.
func TestReleasedLeaseReusedRenewed(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	cl := c.Client(t)
	d := etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d.Close() })
	const ttl = 3 * time.Second
	leaseOf := func(key string) clientv3.LeaseID {
		t.Helper()
		r, err := etcddriver.TokenEntry(ctx, cl, etcddriver.DefaultPrefix, key, key[len(key)-1:])
		if err != nil || len(r.Kvs) != 1 {
			t.Fatalf("Get %s = %v, %v; want the key", key, r, err)
		}
		return clientv3.LeaseID(r.Kvs[0].Lease)
	}
	if res, err := d.Acquire(ctx, driverRequest("pool/a", "a", ttl)); err != nil || !res.Acquired {
		t.Fatalf("Acquire a = %+v, %v", res, err)
	}
	first := leaseOf("pool/a")
	if err := d.Release(ctx, "pool/a", "a"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl / 2)
	if res, err := d.Acquire(ctx, driverRequest("pool/b", "b", ttl)); err != nil || !res.Acquired {
		t.Fatalf("Acquire b = %+v, %v", res, err)
	}
	second := leaseOf("pool/b")
	if second != first {
		t.Errorf("the second grant's lease is %x, the first's %x: the released lease was not reused", second, first)
	}
	left, err := cl.TimeToLive(ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	// Whole seconds, rounded down: renewed, about 2.99 s left reads 2;
	// not renewed, about 1.5 s would read 1.
	if left.TTL < int64(ttl/time.Second)-1 {
		t.Errorf("the reused lease has %d s left right after the grant; want about its TTL, %v", left.TTL, ttl)
	}
	if err := d.Release(ctx, "pool/a", "a"); !errors.Is(err, driver.ErrNotHeld) {
		t.Errorf("second Release of the first grant = %v; want ErrNotHeld", err)
	}
	if err := d.Refresh(ctx, "pool/a", "a", ttl); !errors.Is(err, driver.ErrNotHeld) {
		t.Errorf("Refresh of the released first grant = %v; want ErrNotHeld", err)
	}
	if got := leaseOf("pool/b"); got != second {
		t.Errorf("the second grant moved to lease %x", got)
	}
	if err := d.Release(ctx, "pool/b", "b"); err != nil {
		t.Errorf("Release b = %v", err)
	}
}

// TestReusedLeaseGone checks an acquire whose reused lease is gone (here
// revoked from outside, as if it expired): the attempt fails with
// ErrUnavailable, leaves the key free, and the next attempt, on a new
// lease, gets it.
func TestReusedLeaseGone(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	cl := c.Client(t)
	d := etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d.Close() })
	const ttl = 5 * time.Second
	if res, err := d.Acquire(ctx, driverRequest("gone/a", "a", ttl)); err != nil || !res.Acquired {
		t.Fatalf("Acquire a = %+v, %v", res, err)
	}
	r, err := etcddriver.TokenEntry(ctx, cl, etcddriver.DefaultPrefix, "gone/a", "a")
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("Get = %v, %v", r, err)
	}
	if err := d.Release(ctx, "gone/a", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Revoke(ctx, clientv3.LeaseID(r.Kvs[0].Lease)); err != nil {
		t.Fatalf("revoking the released grant's lease (kept for reuse) = %v", err)
	}
	res, err := d.Acquire(ctx, driverRequest("gone/b", "b", ttl))
	if err == nil || res.Acquired || !errors.Is(err, driver.ErrUnavailable) {
		t.Errorf("Acquire on a reused lease that is gone = %+v, %v; want ErrUnavailable", res, err)
	}
	if g, err := etcddriver.TokenEntry(ctx, cl, etcddriver.DefaultPrefix, "gone/b", "b"); err != nil || len(g.Kvs) != 0 {
		t.Errorf("key after the failed attempt = %v, %v; want it free", g, err)
	}
	if res, err := d.Acquire(ctx, driverRequest("gone/b", "b", ttl)); err != nil || !res.Acquired {
		t.Errorf("next Acquire = %+v, %v; want the key on a new lease", res, err)
	}
}
