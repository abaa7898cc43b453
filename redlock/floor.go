package redlock

import (
	"context"
	"errors"
	"fmt"

	"github.com/dlock-go/dlock/driver"
)

// FloorAcquirer is what a node must implement, besides driver.FenceRaiser,
// when fencing is on: an acquire with a proposed fence floor. A quorum
// proposes one floor to every node, so that a majority grants the same
// fence in one round, with no write-back (see the package documentation
// on fencing). Only this driver needs it; redisdriver and memdriver
// implement it, and a backend whose natural fence is a number of its own
// (a revision, a sequence) need not.
//
// A driver that wraps another (a fault injector, a recorder) and forwards
// AcquireFloor to it follows the driver package's rule for wrapping
// drivers: where its inner driver lacks the method, AcquireFloor returns
// an error wrapping errors.ErrUnsupported, at once and without I/O. A
// quorum whose node answers so fails its acquires with that error.
type FloorAcquirer interface {
	// AcquireFloor is driver.Locker.Acquire with a proposed fence floor
	// (not zero): a grant's fence is the largest of floor, one more than
	// the key's last fence, and whatever else the driver's own rules
	// require (Redis: the server's clock in µs, so that a fence never
	// goes back after the data was lost). The driver must never trust the
	// floor alone to keep fences increasing, since a floor comes from a
	// client's clock.
	AcquireFloor(ctx context.Context, req driver.Request, floor uint64) (driver.Result, error)
}

var _ FloorAcquirer = (*locker)(nil)

// AcquireFloor implements [FloorAcquirer], so that a quorum may be a node
// of another: with fencing, floor is proposed to every node in place of
// this client's own proposal when it is larger, and the lease's fence is
// one of theirs. Without fencing leases carry fence 0, and it returns an
// error wrapping errors.ErrUnsupported.
func (l *locker) AcquireFloor(ctx context.Context, req driver.Request, floor uint64) (driver.Result, error) {
	if !l.cfg.fencing {
		return driver.Result{}, fmt.Errorf("redlock: fencing is disabled: %w", errors.ErrUnsupported)
	}
	return l.acquire(ctx, req, floor)
}

// acquire makes node n's call of an acquire: with floor when fencing.
func (n *node) acquire(ctx context.Context, req driver.Request, fencing bool, floor uint64) (driver.Result, error) {
	if fencing {
		return n.floor.AcquireFloor(ctx, req, floor)
	}
	return n.d.Acquire(ctx, req)
}
