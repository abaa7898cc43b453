package conformance

import (
	"context"
	"time"

	"github.com/dlock-go/dlock/driver"
)

var _ driver.Semaphore = (*FaultyDriver)(nil)

// slots returns the wrapped driver's semaphores, or the error that says it
// has none, wrapping errors.ErrUnsupported.
func (f *FaultyDriver) slots() (driver.Semaphore, error) {
	s, ok := f.inner.(driver.Semaphore)
	if !ok {
		return nil, unsupported(f.inner, "hold semaphores")
	}
	return s, nil
}

// AcquireSlot implements [driver.Semaphore], or returns an error wrapping
// errors.ErrUnsupported if the wrapped driver has no semaphores.
func (f *FaultyDriver) AcquireSlot(ctx context.Context, req driver.Request, limit int) (driver.Result, error) {
	s, err := f.slots()
	if err == nil {
		err = f.enter(ctx, "acquire slot")
	}
	if err != nil {
		return driver.Result{}, err
	}
	return s.AcquireSlot(ctx, req, limit)
}

// RefreshSlot implements [driver.Semaphore], as AcquireSlot does.
func (f *FaultyDriver) RefreshSlot(ctx context.Context, key, token string, ttl time.Duration) error {
	s, err := f.slots()
	if err == nil {
		err = f.enter(ctx, "refresh slot")
	}
	if err != nil {
		return err
	}
	return s.RefreshSlot(ctx, key, token, ttl)
}

// RefreshSlots implements [driver.Semaphore]: the fault applies once to the
// whole batch.
func (f *FaultyDriver) RefreshSlots(ctx context.Context, reqs []driver.RefreshRequest) []error {
	s, err := f.slots()
	if err == nil {
		err = f.enter(ctx, "refresh slots")
	}
	if err != nil {
		errs := make([]error, len(reqs))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	return s.RefreshSlots(ctx, reqs)
}

// ReleaseSlot implements [driver.Semaphore], as AcquireSlot does.
func (f *FaultyDriver) ReleaseSlot(ctx context.Context, key, token string) error {
	s, err := f.slots()
	if err == nil {
		err = f.enter(ctx, "release slot")
	}
	if err != nil {
		return err
	}
	return s.ReleaseSlot(ctx, key, token)
}

// InspectSlots implements [driver.Semaphore], as AcquireSlot does.
func (f *FaultyDriver) InspectSlots(ctx context.Context, key string) ([]driver.Holder, int, error) {
	s, err := f.slots()
	if err == nil {
		err = f.enter(ctx, "inspect slots")
	}
	if err != nil {
		return nil, 0, err
	}
	return s.InspectSlots(ctx, key)
}
