package etcddriver_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
)

// TestRefreshOfUncertainAttemptWhileAnotherHolds refreshes the token of
// an Acquire whose reply was lost, after its transaction found the key
// held by another token: the driver keeps the attempt's lease (alive,
// with no key on it) for the token's release, and a keep-alive of it
// says nothing of the key. Refresh must report ErrNotHeld: the other
// token holds the key.
func TestRefreshOfUncertainAttemptWhileAnotherHolds(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	lc := newLossy(t, c)
	d := etcddriver.NewDriver(lc.Client, nil)
	holder := etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d.Close(); holder.Close() })
	const key, ttl = "attack/refresh-uncertain", 30 * time.Second
	if res, err := holder.Acquire(ctx, driverRequest(key, "b", ttl)); err != nil || !res.Acquired {
		t.Fatalf("Acquire(b) = %+v, %v", res, err)
	}
	lc.lose(false, methodTxn)
	_, err := d.Acquire(ctx, driverRequest(key, "a", ttl))
	lc.lose(false)
	if !driver.OutcomeUnknown(err) {
		t.Fatalf("Acquire(a) with its reply lost = %v; want an unknown outcome", err)
	}
	if err := d.Refresh(ctx, key, "a", ttl); !errors.Is(err, driver.ErrNotHeld) {
		t.Errorf("Refresh(a) while b holds = %v; want ErrNotHeld", err)
	}
	if errs := d.(driver.BatchRefresher).RefreshBatch(ctx, []driver.RefreshRequest{{Key: key, Token: "a", TTL: ttl}}); !errors.Is(errs[0], driver.ErrNotHeld) {
		t.Errorf("RefreshBatch(a) while b holds = %v; want ErrNotHeld", errs[0])
	}
	if err := d.Release(ctx, key, "a"); !errors.Is(err, driver.ErrNotHeld) {
		t.Errorf("Release(a) = %v; want ErrNotHeld", err)
	}
}

// TestRefreshOfQueuedWaiter refreshes the token of a waiter whose queued
// attempt left its entry behind the holder's, through the driver that
// made the entry and through another: the waiter does not hold the key,
// and Refresh must report ErrNotHeld (the driver contract), however alive
// its entry's lease.
func TestRefreshOfQueuedWaiter(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	d, other := etcddriver.NewDriver(c.Client(t), nil), etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d.Close(); other.Close() })
	const key, ttl = "attack/refresh-waiter", 30 * time.Second
	if res, err := d.Acquire(ctx, driverRequest(key, "b", ttl)); err != nil || !res.Acquired {
		t.Fatalf("Acquire(b) = %+v, %v", res, err)
	}
	q := driver.Queued{Wait: time.Minute, Attempt: 1}
	if res, err := d.(driver.Handoff).AcquireQueued(ctx, driverRequest(key, "w", ttl), q); err != nil || res.Acquired {
		t.Fatalf("AcquireQueued(w) = %+v, %v; want busy", res, err)
	}
	for name, dr := range map[string]driver.Locker{"SameDriver": d, "OtherDriver": other} {
		if err := dr.Refresh(ctx, key, "w", ttl); !errors.Is(err, driver.ErrNotHeld) {
			t.Errorf("%s: Refresh(w) of a waiter behind b = %v; want ErrNotHeld", name, err)
		}
		if errs := dr.(driver.BatchRefresher).RefreshBatch(ctx, []driver.RefreshRequest{{Key: key, Token: "w", TTL: ttl}}); !errors.Is(errs[0], driver.ErrNotHeld) {
			t.Errorf("%s: RefreshBatch(w) of a waiter behind b = %v; want ErrNotHeld", name, errs[0])
		}
	}
}
