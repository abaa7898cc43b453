package redisdriver_test

import (
	"context"
	"testing"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redlock"
)

// acquireQueued makes d's attempt of req queued as q (driver.Handoff), as a
// waiter's attempt is.
func acquireQueued(ctx context.Context, t *testing.T, d driver.Locker, req driver.Request, q driver.Queued) (driver.Result, error) {
	t.Helper()
	h, ok := d.(driver.Handoff)
	if !ok {
		t.Fatalf("%T is not a driver.Handoff", d)
	}
	return h.AcquireQueued(ctx, req, q)
}

// acquireFloor makes d's attempt of req with a fence floor, as a quorum's
// node request is.
func acquireFloor(ctx context.Context, t *testing.T, d driver.Locker, req driver.Request, floor uint64) (driver.Result, error) {
	t.Helper()
	fa, ok := d.(redlock.FloorAcquirer)
	if !ok {
		t.Fatalf("%T is not a redlock.FloorAcquirer", d)
	}
	return fa.AcquireFloor(ctx, req, floor)
}
