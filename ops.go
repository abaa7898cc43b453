package dlock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// keyOps are the backend calls of one kind of key, chosen once when an
// acquire starts and kept by its lease: a lock's ([lockOps]) or a
// semaphore slot's ([slotOps]).
type keyOps interface {
	acquire(ctx context.Context, req driver.Request) (driver.Result, error)
	release(ctx context.Context, key, token string) error
	refresh(ctx context.Context, key, token string, ttl time.Duration) error
	// limit is the semaphore's limit, 0 for a lock: for events and
	// messages.
	limit() int
}

// ops returns the calls of a key with limit, a valid one (see
// LeaseOptions.resolve): a lock's for 0, a slot's otherwise, if the
// driver has semaphores.
func (l *Locker) ops(limit int) (keyOps, error) {
	if limit == 0 {
		return lockOps{l.drv}, nil
	}
	slots, ok := l.drv.(driver.Semaphore)
	if !ok {
		return nil, fmt.Errorf("dlock: driver %T has no semaphores: %w", l.drv, errors.ErrUnsupported)
	}
	return slotOps{slots, limit}, nil
}

// lockOps are a lock's calls: the driver's own methods.
type lockOps struct{ d driver.Locker }

func (o lockOps) acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	return o.d.Acquire(ctx, req)
}

func (o lockOps) release(ctx context.Context, key, token string) error {
	return o.d.Release(ctx, key, token)
}

func (o lockOps) refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	return o.d.Refresh(ctx, key, token, ttl)
}

func (lockOps) limit() int { return 0 }

// slotOps are the calls of a slot of a semaphore with n slots.
type slotOps struct {
	s driver.Semaphore
	n int
}

func (o slotOps) acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	return o.s.AcquireSlot(ctx, req, o.n)
}

func (o slotOps) release(ctx context.Context, key, token string) error {
	return o.s.ReleaseSlot(ctx, key, token)
}

func (o slotOps) refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	return o.s.RefreshSlot(ctx, key, token, ttl)
}

func (o slotOps) limit() int { return o.n }
