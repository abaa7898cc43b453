package redlock_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// TestNaiveQuorumSemaphoreUnsafe is the reason redlock refuses semaphores,
// shown on three nodes with per-node semaphores of limit 2: holders A, B
// and C each take slots on a different majority, every node stays within
// its limit, and three holders have a majority each.
func TestNaiveQuorumSemaphoreUnsafe(t *testing.T) {
	ctx := context.Background()
	nodes := make([]driver.Semaphore, 3)
	for i := range nodes {
		d := memdriver.NewStore().Driver()
		defer d.Close()
		nodes[i] = d.(driver.Semaphore)
	}
	majorities := map[string][]int{"A": {0, 1}, "B": {0, 2}, "C": {1, 2}}
	withMajority := 0
	for tok, on := range majorities {
		granted := 0
		for _, i := range on {
			res, err := nodes[i].AcquireSlot(ctx, driver.Request{Key: "k", Token: tok, TTL: time.Minute}, 2)
			if err != nil {
				t.Fatal(err)
			}
			if res.Acquired {
				granted++
			}
		}
		if granted >= 2 {
			withMajority++
		}
	}
	if withMajority != 3 {
		t.Fatalf("%d holders with a majority; the counterexample needs 3", withMajority)
	}
}

// TestSemaphoreRefused: every driver.Semaphore method of a Redlock driver
// answers errors.ErrUnsupported at once, saying why, also over nodes that
// have semaphores; dlock's Semaphore over it does too, and its locks work.
func TestSemaphoreRefused(t *testing.T) {
	c := newMemCluster(3)
	d, _ := c.driver(t, nil)
	sem := d.(driver.Semaphore)
	ctx := context.Background()
	_, aerr := sem.AcquireSlot(ctx, driver.Request{Key: "k", Token: "t", TTL: time.Second}, 2)
	_, _, ierr := sem.InspectSlots(ctx, "k")
	for name, err := range map[string]error{
		"AcquireSlot":  aerr,
		"RefreshSlot":  sem.RefreshSlot(ctx, "k", "t", time.Second),
		"RefreshSlots": sem.RefreshSlots(ctx, []driver.RefreshRequest{{Key: "k", Token: "t", TTL: time.Second}})[0],
		"ReleaseSlot":  sem.ReleaseSlot(ctx, "k", "t"),
		"InspectSlots": ierr,
	} {
		if !errors.Is(err, errors.ErrUnsupported) || !contains(err, "majority") {
			t.Errorf("%s = %v; want errors.ErrUnsupported with the reason", name, err)
		}
	}
	l := dlock.New(d, nil)
	defer l.Close()
	if _, err := l.TryAcquire(ctx, "k", &dlock.LeaseOptions{Limit: 2}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("dlock Semaphore over redlock = %v; want errors.ErrUnsupported", err)
	}
	lease, err := l.TryAcquire(ctx, "k", nil)
	if err != nil {
		t.Fatalf("a lock over redlock = %v", err)
	}
	lease.Release(ctx)
}

func contains(err error, s string) bool {
	return err != nil && strings.Contains(err.Error(), s)
}
