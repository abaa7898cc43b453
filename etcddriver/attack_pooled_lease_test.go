package etcddriver_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
)

// TestPooledLeaseNotRenewedForReleasedToken holds a token's grant in two
// drivers (two processes with one token): the first made it, the second
// learned its lease from a refresh, then released it, and reuses the
// lease for another token's grant of the same key. The first driver's
// Refresh of the released token must report ErrNotHeld: a keep-alive of
// the lease it remembers renews the other token's entry now, and an ok
// would make two holders of the key.
//
// MadeByReleaser has the second driver make the grant, and the first
// learn it from a refresh.
func TestPooledLeaseNotRenewedForReleasedToken(t *testing.T) {
	c := etcdtest.Start(t, 1)
	for _, madeByReleaser := range []bool{false, true} {
		name := "MadeByRefresher"
		if madeByReleaser {
			name = "MadeByReleaser"
		}
		t.Run(name, func(t *testing.T) { testPooledLease(t, c, madeByReleaser) })
	}
}

func testPooledLease(t *testing.T, c *etcdtest.Cluster, madeByReleaser bool) {
	ctx := testCtx(t)
	d1, d2 := etcddriver.NewDriver(c.Client(t), nil), etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d1.Close(); d2.Close() })
	key, ttl := "attack/pooled-lease/"+t.Name(), 30*time.Second

	maker, learner := d1, d2
	if madeByReleaser {
		maker, learner = d2, d1
	}
	if res, err := maker.Acquire(ctx, driverRequest(key, "a", ttl)); err != nil || !res.Acquired {
		t.Fatalf("Acquire(a) = %+v, %v", res, err)
	}
	if err := learner.Refresh(ctx, key, "a", ttl); err != nil {
		t.Fatalf("Refresh(a) through the driver that did not make it = %v", err)
	}
	if err := d2.Release(ctx, key, "a"); err != nil {
		t.Fatalf("Release(a) through the second driver = %v", err)
	}
	b, err := d2.Acquire(ctx, driverRequest(key, "b", ttl))
	if err != nil || !b.Acquired {
		t.Fatalf("Acquire(b) = %+v, %v", b, err)
	}
	if err := d1.Refresh(ctx, key, "a", ttl); !errors.Is(err, driver.ErrNotHeld) {
		t.Errorf("Refresh(a) through the first driver, after a's release and b's grant = %v; want ErrNotHeld: a and b both hold", err)
	}
	if errs := d1.(driver.BatchRefresher).RefreshBatch(ctx, []driver.RefreshRequest{{Key: key, Token: "a", TTL: ttl}}); !errors.Is(errs[0], driver.ErrNotHeld) {
		t.Errorf("RefreshBatch(a) through the first driver = %v; want ErrNotHeld", errs[0])
	}
}
