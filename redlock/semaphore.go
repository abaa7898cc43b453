package redlock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dlock-go/dlock/driver"
)

var _ driver.Semaphore = (*locker)(nil)

// errNoSemaphores is the answer of every driver.Semaphore method: a
// majority of per-node semaphores does not bound the holders. With a limit
// of 2 and three nodes, holders A, B and C can take slots on nodes {1,2},
// {1,3} and {2,3}: each node has two holders, within its limit, and each
// holder has a majority, so three hold a semaphore of two. A scheme that
// bounds them needs more than majorities (every pair of the N+1 holders'
// node sets would have to meet on a node that counts both, which
// majorities of nodes with N slots each do not give), and none is proven
// here.
var errNoSemaphores = fmt.Errorf("redlock: semaphores are not offered: a majority of per-node semaphores does not bound the holders (with limit 2 and 3 nodes, A on nodes 1,2, B on 1,3 and C on 2,3 each hold a majority, three holders of two slots); use a single Redis (redisdriver) for semaphores: %w", errors.ErrUnsupported)

// AcquireSlot implements [driver.Semaphore] by refusing: see errNoSemaphores.
func (l *locker) AcquireSlot(context.Context, driver.Request, int) (driver.Result, error) {
	return driver.Result{}, errNoSemaphores
}

// RefreshSlot refuses, as AcquireSlot does.
func (l *locker) RefreshSlot(context.Context, string, string, time.Duration) error {
	return errNoSemaphores
}

// RefreshSlots refuses every request, as AcquireSlot does.
func (l *locker) RefreshSlots(_ context.Context, reqs []driver.RefreshRequest) []error {
	errs := make([]error, len(reqs))
	for i := range errs {
		errs[i] = errNoSemaphores
	}
	return errs
}

// ReleaseSlot refuses, as AcquireSlot does.
func (l *locker) ReleaseSlot(context.Context, string, string) error { return errNoSemaphores }

// InspectSlots refuses, as AcquireSlot does.
func (l *locker) InspectSlots(context.Context, string) ([]driver.Holder, int, error) {
	return nil, 0, errNoSemaphores
}
