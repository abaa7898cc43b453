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

// TestRefreshRacingReleaseLeavesNoGrant runs a token's Refresh beside its
// Release (dlock's renewal in flight when the holder releases), over and
// over: whichever ends first, a Refresh of the token after both returned
// must report ErrNotHeld. The release keeps the grant's lease alive in
// the driver's pool, so a refresh whose keep-alive is answered after the
// release must not record the grant again: the next Refresh would renew
// the pooled lease (or the next token's grant on it) and report the key
// held.
func TestRefreshRacingReleaseLeavesNoGrant(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	d := etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d.Close() })
	const ttl = 30 * time.Second
	ghosts := 0
	for i := range 200 {
		key, tok := fmt.Sprint("attack/refresh-release/", i), fmt.Sprint("a", i)
		if res, err := d.Acquire(ctx, driverRequest(key, tok, ttl)); err != nil || !res.Acquired {
			t.Fatalf("Acquire(%s) = %+v, %v", tok, res, err)
		}
		var wg sync.WaitGroup
		var relErr error
		wg.Go(func() { relErr = d.Release(ctx, key, tok) })
		wg.Go(func() {
			time.Sleep(time.Duration(i%8) * 100 * time.Microsecond)
			d.Refresh(ctx, key, tok, ttl)
		})
		wg.Wait()
		if relErr != nil {
			t.Fatalf("Release(%s) = %v", tok, relErr)
		}
		if err := d.Refresh(ctx, key, tok, ttl); !errors.Is(err, driver.ErrNotHeld) {
			ghosts++
			if ghosts == 1 {
				t.Errorf("round %d: Refresh(%s) after its Release returned = %v; want ErrNotHeld", i, tok, err)
			}
		}
	}
	if ghosts > 0 {
		t.Errorf("%d of 200 released tokens still refreshed after their release", ghosts)
	}
}
