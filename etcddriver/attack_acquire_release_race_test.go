package etcddriver_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
)

// TestAcquireRacingReleaseLeavesNoGrant runs a holder's repeated Acquire
// (the same grant again, renewed) beside its Release, over and over:
// once both returned, a Refresh of the token must report ErrNotHeld
// exactly when the token has no entry in etcd. A renewal answered after
// the release kept the grant's lease in the pool must not record the
// grant again.
func TestAcquireRacingReleaseLeavesNoGrant(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	cl := c.Client(t)
	d := etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d.Close() })
	const ttl = 30 * time.Second
	ghosts := 0
	for i := range 200 {
		key, tok := fmt.Sprint("attack/acquire-release/", i), fmt.Sprint("a", i)
		if res, err := d.Acquire(ctx, driverRequest(key, tok, ttl)); err != nil || !res.Acquired {
			t.Fatalf("Acquire(%s) = %+v, %v", tok, res, err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { d.Release(ctx, key, tok) })
		wg.Go(func() {
			time.Sleep(time.Duration(i%8) * 100 * time.Microsecond)
			d.Acquire(ctx, driverRequest(key, tok, ttl))
		})
		wg.Wait()
		r, err := etcddriver.TokenEntry(ctx, cl, etcddriver.DefaultPrefix, key, tok)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Refresh(ctx, key, tok, ttl); len(r.Kvs) == 0 && !errors.Is(err, driver.ErrNotHeld) {
			ghosts++
			if ghosts == 1 {
				t.Errorf("round %d: Refresh(%s) with no entry of the token in etcd = %v; want ErrNotHeld", i, tok, err)
			}
		}
		d.Release(ctx, key, tok)
	}
	if ghosts > 0 {
		t.Errorf("%d of 200 tokens refreshed with no entry", ghosts)
	}
}
