package etcddriver_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/conformance"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
)

// TestSubSecondTTL holds a lease of TTL 500 ms (asked of etcd as 1 s)
// for 2 s of renewals, then cuts the holder off: its lease must end at
// its local deadline, before etcd frees the key, and a waiter must get
// the key, with a greater fence, within etcd's TTL and expiry check
// (1 s + 500 ms) and a round trip of that deadline.
func TestSubSecondTTL(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	const ttl = 500 * time.Millisecond
	f := conformance.Faulty(etcddriver.NewDriver(c.Client(t), nil))
	holder := dlock.New(f, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: ttl}})
	defer holder.Close()
	waiter := etcddriver.New(c.Client(t), &etcddriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: ttl}}})
	defer waiter.Close()
	const key = "short/ttl"
	lease, err := holder.Acquire(ctx, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := lease.Err(); err != nil {
		t.Fatalf("a 500 ms lease lost after 2 s of renewals: %v", err)
	}
	f.Partition()
	got, err := waiter.Acquire(ctx, key, nil)
	if err != nil {
		t.Fatalf("waiter's Acquire = %v", err)
	}
	at := time.Now()
	defer got.Release(ctx)
	if vu := lease.ValidUntil(); !vu.Before(at) {
		t.Errorf("the cut-off holder's local deadline %v is not before the waiter's grant at %v", vu.Format(time.StampMicro), at.Format(time.StampMicro))
	}
	if wake := at.Sub(lease.ValidUntil()); wake > 2*time.Second {
		t.Errorf("the waiter got the key %v after the holder's deadline; want within etcd's 1 s TTL and its 500 ms check", wake)
	} else {
		t.Logf("the waiter got the key %v after the holder's deadline", wake.Round(time.Millisecond))
	}
	if got.Fence() <= lease.Fence() {
		t.Errorf("fence %d after %d", got.Fence(), lease.Fence())
	}
}

// TestReleaseCancelledMidCall cancels Release calls at every point of
// their round trip: each either frees the key, or fails, after which the
// key is free or still the token's, and a second Release frees it. No
// cut Release leaves the key held by nobody, and the leases the driver
// keeps for reuse never serve a grant that is still held.
func TestReleaseCancelledMidCall(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	d, other := etcddriver.NewDriver(c.Client(t), nil), etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d.Close(); other.Close() })
	outcomes := map[string]int{}
	for i := range 120 {
		key, tok := fmt.Sprintf("cancel/release-%d", i%3), fmt.Sprint("tok-", i)
		res, err := d.Acquire(ctx, driverRequest(key, tok, 30*time.Second))
		if err != nil || !res.Acquired {
			t.Fatalf("attempt %d: Acquire = %+v, %v", i, res, err)
		}
		cctx, cancel := context.WithTimeout(ctx, time.Duration(i)*40*time.Microsecond)
		err = d.Release(cctx, key, tok)
		cancel()
		if err == nil {
			outcomes["released"]++
		} else {
			outcomes["cut"]++
			if err := d.Release(ctx, key, tok); err != nil && !errors.Is(err, driver.ErrNotHeld) {
				t.Fatalf("attempt %d: second Release = %v", i, err)
			}
		}
		res, err = other.Acquire(ctx, driverRequest(key, "other", 30*time.Second))
		if err != nil || !res.Acquired {
			t.Fatalf("attempt %d: the key is not free after a cut Release and another: %+v, %v", i, res, err)
		}
		if err := other.Release(ctx, key, "other"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("outcomes: %v", outcomes)
}
