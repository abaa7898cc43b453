package dlock_test

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// memClient is a memdriver client with every capability it has.
type memClient interface {
	driver.Locker
	driver.Handoff
	driver.Semaphore
	driver.Inspector
}

// spy is a memdriver client that counts its calls and lets a test hook
// some of them: each hook gets the call's arguments and the call to the
// store.
type spy struct {
	memClient
	calls atomic.Int64

	// acquire gets every attempt: Acquire's and AcquireSlot's with q
	// zero, AcquireQueued's with its q.
	acquire     func(ctx context.Context, req driver.Request, q driver.Queued, next func() (driver.Result, error)) (driver.Result, error)
	release     func(ctx context.Context, key, token string, next func() error) error
	subscribe   func(ctx context.Context, key, token string) error // called before the store's Subscribe (token "") and SubscribeHandoff
	inspectSlot func(hs []driver.Holder) []driver.Holder
}

func (d *spy) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	d.calls.Add(1)
	next := func() (driver.Result, error) { return d.memClient.Acquire(ctx, req) }
	if d.acquire != nil {
		return d.acquire(ctx, req, driver.Queued{}, next)
	}
	return next()
}

func (d *spy) AcquireQueued(ctx context.Context, req driver.Request, q driver.Queued) (driver.Result, error) {
	d.calls.Add(1)
	next := func() (driver.Result, error) { return d.memClient.AcquireQueued(ctx, req, q) }
	if d.acquire != nil {
		return d.acquire(ctx, req, q, next)
	}
	return next()
}

func (d *spy) AcquireSlot(ctx context.Context, req driver.Request, limit int) (driver.Result, error) {
	d.calls.Add(1)
	next := func() (driver.Result, error) { return d.memClient.AcquireSlot(ctx, req, limit) }
	if d.acquire != nil {
		return d.acquire(ctx, req, driver.Queued{}, next)
	}
	return next()
}

func (d *spy) Release(ctx context.Context, key, token string) error {
	d.calls.Add(1)
	next := func() error { return d.memClient.Release(ctx, key, token) }
	if d.release != nil {
		return d.release(ctx, key, token, next)
	}
	return next()
}

func (d *spy) ReleaseSlot(ctx context.Context, key, token string) error {
	d.calls.Add(1)
	next := func() error { return d.memClient.ReleaseSlot(ctx, key, token) }
	if d.release != nil {
		return d.release(ctx, key, token, next)
	}
	return next()
}

func (d *spy) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	d.calls.Add(1)
	return d.memClient.Refresh(ctx, key, token, ttl)
}

func (d *spy) Subscribe(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	d.calls.Add(1)
	if d.subscribe != nil {
		if err := d.subscribe(ctx, key, ""); err != nil {
			return nil, nil, err
		}
	}
	return d.memClient.Subscribe(ctx, key)
}

func (d *spy) SubscribeHandoff(ctx context.Context, key, token string) (<-chan driver.Turn, func(), error) {
	d.calls.Add(1)
	if d.subscribe != nil {
		if err := d.subscribe(ctx, key, token); err != nil {
			return nil, nil, err
		}
	}
	return d.memClient.SubscribeHandoff(ctx, key, token)
}

func (d *spy) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	d.calls.Add(1)
	return d.memClient.Inspect(ctx, key)
}

func (d *spy) InspectSlots(ctx context.Context, key string) ([]driver.Holder, int, error) {
	d.calls.Add(1)
	hs, limit, err := d.memClient.InspectSlots(ctx, key)
	if d.inspectSlot != nil {
		hs = d.inspectSlot(hs)
	}
	return hs, limit, err
}
