package etcddriver_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
)

// TestConcurrentRefreshesGetTheirOwnReplies refreshes many grants at once
// through one driver, whose keep-alives share one stream: half of the
// grants were released through another driver (their leases revoked), so
// their renewals come back empty and must be reported as ErrNotHeld, and
// the others, several refreshed at once each, must succeed. A reply
// handed to the wrong caller shows as a held grant reported lost, or a
// released one reported renewed.
func TestConcurrentRefreshesGetTheirOwnReplies(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	d, other := etcddriver.NewDriver(c.Client(t), nil), etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d.Close(); other.Close() })
	const n = 40
	ttl := 20 * time.Second
	key := func(i int) string { return fmt.Sprint("ka/", i) }
	tok := func(i int) string { return fmt.Sprint("tok-", i) }
	for i := range n {
		if res, err := d.Acquire(ctx, driverRequest(key(i), tok(i), ttl)); err != nil || !res.Acquired {
			t.Fatalf("acquire %d: %+v, %v", i, res, err)
		}
		if i%2 == 1 {
			if err := other.Release(ctx, key(i), tok(i)); err != nil {
				t.Fatalf("release %d through another driver: %v", i, err)
			}
		}
	}
	for round := range 3 {
		var wg sync.WaitGroup
		errs := make([]error, 3*n)
		for j := range errs {
			wg.Go(func() { errs[j] = d.Refresh(ctx, key(j%n), tok(j%n), ttl) })
		}
		wg.Wait()
		for j, err := range errs {
			i := j % n
			switch {
			case i%2 == 0 && err != nil:
				t.Errorf("round %d: Refresh of held grant %d = %v, want nil", round, i, err)
			case i%2 == 1 && !errors.Is(err, driver.ErrNotHeld):
				t.Errorf("round %d: Refresh of released grant %d = %v, want ErrNotHeld", round, i, err)
			}
		}
	}
}

// TestShortDeadlinesLeaveHealthyStreamAlone refreshes held grants through
// one driver while other callers of the same driver, whose deadlines end
// a few hundred microseconds into their refresh, keep leaving the shared
// keep-alive stream: they must leave it alone, so that the refreshes
// with time to spare all succeed. A caller that dropped the stream at
// its deadline failed the others' renewals with an unknown outcome on a
// healthy member.
func TestShortDeadlinesLeaveHealthyStreamAlone(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	d := etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d.Close() })
	const n = 8
	ttl := 20 * time.Second
	key := func(i int) string { return fmt.Sprint("short/", i) }
	tok := func(i int) string { return fmt.Sprint("tok-", i) }
	for i := range n {
		if res, err := d.Acquire(ctx, driverRequest(key(i), tok(i), ttl)); err != nil || !res.Acquired {
			t.Fatalf("acquire %d: %+v, %v", i, res, err)
		}
	}
	stop := make(chan struct{})
	var leavers sync.WaitGroup
	for i := range n / 2 {
		leavers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				sctx, cancel := context.WithTimeout(ctx, time.Duration(100+rand.N(400))*time.Microsecond)
				d.Refresh(sctx, key(i), tok(i), ttl)
				cancel()
			}
		})
	}
	defer func() { close(stop); leavers.Wait() }()
	for round := range 200 {
		i := n/2 + round%(n/2)
		if err := d.Refresh(ctx, key(i), tok(i), ttl); err != nil {
			t.Fatalf("round %d: Refresh of held grant %d with time to spare = %v, want nil", round, i, err)
		}
	}
}
