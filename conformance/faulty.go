package conformance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// FaultyDriver wraps a driver and injects faults on demand: a network
// partition, a backend that refuses service, added latency. Tests use it to
// see how dlock, or a driver composed over others such as redlock, behaves
// when one backend misbehaves. Make one with [Faulty].
//
// It implements [driver.Locker] and every optional capability, so that a
// wrapped driver keeps its capabilities. Go cannot implement an interface
// conditionally, so, by the driver package's rule for wrapping drivers,
// when the wrapped driver lacks one: Subscribe, SubscribeHandoff,
// AcquireQueued, Inspect, RaiseFence, AcquireFloor and the
// [driver.Semaphore] methods return an error wrapping
// [errors.ErrUnsupported] (dlock
// then polls, and reports the error, as it would without the capability),
// and RefreshBatch is emulated with one Refresh per request, so renewal
// keeps working.
//
// Faults apply to calls that start after they are set; Close is never
// faulted. Release notifications of subscriptions made before a fault keep
// arriving: the wrapper does not stand between a subscription and its
// channel.
//
// A FaultyDriver is safe for concurrent use.
type FaultyDriver struct {
	inner driver.Locker

	mu      sync.Mutex
	fault   fault
	latency time.Duration
	healed  chan struct{} // closed by Heal; new at each Partition
	closed  chan struct{} // closed by Close
	once    sync.Once
}

type fault int

const (
	healthy fault = iota
	partitioned
	refusing
)

var (
	_ driver.Locker         = (*FaultyDriver)(nil)
	_ driver.Notifier       = (*FaultyDriver)(nil)
	_ driver.Inspector      = (*FaultyDriver)(nil)
	_ driver.BatchRefresher = (*FaultyDriver)(nil)
	_ driver.FenceRaiser    = (*FaultyDriver)(nil)
)

// Faulty returns a healthy FaultyDriver over d. Closing it closes d.
func Faulty(d driver.Locker) *FaultyDriver {
	return &FaultyDriver{inner: d, healed: make(chan struct{}), closed: make(chan struct{})}
}

// Partition cuts the driver off: each later call hangs until its context
// ends and then fails with an error wrapping ctx.Err(), as a call into a
// network partition times out; the backend never sees it. A call still
// hanging when [FaultyDriver.Heal] is called goes through then, like a
// delayed packet.
func (f *FaultyDriver) Partition() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fault != partitioned {
		f.fault = partitioned
		f.healed = make(chan struct{})
	}
}

// Refuse makes each later call fail at once with an error wrapping
// [driver.ErrUnavailable], as a backend that refuses connections does; the
// backend never sees it.
func (f *FaultyDriver) Refuse() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.endPartition()
	f.fault = refusing
}

// SetLatency delays each later call by d before it reaches the backend; a
// call whose context ends meanwhile fails with an error wrapping ctx.Err()
// and is never applied. Zero removes the delay.
func (f *FaultyDriver) SetLatency(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latency = d
}

// Heal removes every fault: partition, refusal and latency.
func (f *FaultyDriver) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.endPartition()
	f.fault = healthy
	f.latency = 0
}

// endPartition lets hanging calls through. f.mu must be held.
func (f *FaultyDriver) endPartition() {
	if f.fault == partitioned {
		close(f.healed)
	}
}

// enter applies the faults to one call; nil means go ahead.
func (f *FaultyDriver) enter(ctx context.Context, op string) error {
	f.mu.Lock()
	latency := f.latency
	f.mu.Unlock()
	if latency > 0 {
		t := time.NewTimer(latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("conformance: %s: latency (injected fault): %w", op, ctx.Err())
		case <-f.closed:
			return fmt.Errorf("conformance: %s: driver closed", op)
		}
	}
	f.mu.Lock()
	flt, healed := f.fault, f.healed
	f.mu.Unlock()
	switch flt {
	case refusing:
		return fmt.Errorf("conformance: %s refused (injected fault): %w", op, driver.ErrUnavailable)
	case partitioned:
		select {
		case <-healed:
		case <-ctx.Done():
			return fmt.Errorf("conformance: %s: partitioned (injected fault): %w", op, ctx.Err())
		case <-f.closed:
			return fmt.Errorf("conformance: %s: driver closed while partitioned", op)
		}
	}
	return nil
}

// Acquire implements [driver.Locker].
func (f *FaultyDriver) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	if err := f.enter(ctx, "acquire"); err != nil {
		return driver.Result{}, err
	}
	return f.inner.Acquire(ctx, req)
}

// Refresh implements [driver.Locker].
func (f *FaultyDriver) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	if err := f.enter(ctx, "refresh"); err != nil {
		return err
	}
	return f.inner.Refresh(ctx, key, token, ttl)
}

// Release implements [driver.Locker].
func (f *FaultyDriver) Release(ctx context.Context, key, token string) error {
	if err := f.enter(ctx, "release"); err != nil {
		return err
	}
	return f.inner.Release(ctx, key, token)
}

// Close closes the wrapped driver, and fails calls hanging in a fault.
func (f *FaultyDriver) Close() error {
	f.once.Do(func() { close(f.closed) })
	return f.inner.Close()
}

// Subscribe implements [driver.Notifier], or returns an error wrapping
// [errors.ErrUnsupported] if the wrapped driver cannot notify.
func (f *FaultyDriver) Subscribe(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	n, ok := f.inner.(driver.Notifier)
	if !ok {
		return nil, nil, unsupported(f.inner, "notify releases")
	}
	if err := f.enter(ctx, "subscribe"); err != nil {
		return nil, nil, err
	}
	return n.Subscribe(ctx, key)
}

var _ driver.Handoff = (*FaultyDriver)(nil)

// SubscribeHandoff implements [driver.Handoff], or returns an error
// wrapping [errors.ErrUnsupported] if the wrapped driver does not hand
// off. Turns, like release notifications, bypass the faults.
func (f *FaultyDriver) SubscribeHandoff(ctx context.Context, key, token string) (<-chan driver.Turn, func(), error) {
	h, ok := f.inner.(driver.Handoff)
	if !ok {
		return nil, nil, unsupported(f.inner, "hand off")
	}
	if err := f.enter(ctx, "subscribe"); err != nil {
		return nil, nil, err
	}
	return h.SubscribeHandoff(ctx, key, token)
}

// AcquireQueued implements [driver.Handoff], faulted as Acquire, or
// returns an error wrapping [errors.ErrUnsupported] if the wrapped driver
// does not hand off.
func (f *FaultyDriver) AcquireQueued(ctx context.Context, req driver.Request, q driver.Queued) (driver.Result, error) {
	h, ok := f.inner.(driver.Handoff)
	if !ok {
		return driver.Result{}, unsupported(f.inner, "hand off")
	}
	if err := f.enter(ctx, "acquire"); err != nil {
		return driver.Result{}, err
	}
	return h.AcquireQueued(ctx, req, q)
}

// Inspect implements [driver.Inspector], or returns an error wrapping
// [errors.ErrUnsupported] if the wrapped driver cannot inspect.
func (f *FaultyDriver) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	in, ok := f.inner.(driver.Inspector)
	if !ok {
		return driver.Holder{}, false, unsupported(f.inner, "inspect")
	}
	if err := f.enter(ctx, "inspect"); err != nil {
		return driver.Holder{}, false, err
	}
	return in.Inspect(ctx, key)
}

// RaiseFence implements [driver.FenceRaiser], or returns an error wrapping
// [errors.ErrUnsupported] if the wrapped driver cannot raise fences.
func (f *FaultyDriver) RaiseFence(ctx context.Context, key, token string, fence uint64) error {
	fr, ok := f.inner.(driver.FenceRaiser)
	if !ok {
		return unsupported(f.inner, "raise fences")
	}
	if err := f.enter(ctx, "raise fence"); err != nil {
		return err
	}
	return fr.RaiseFence(ctx, key, token, fence)
}

// RefreshBatch implements [driver.BatchRefresher]: the fault applies once to
// the whole batch, which goes to the wrapped driver's RefreshBatch, or to
// its Refresh item by item if it cannot batch.
func (f *FaultyDriver) RefreshBatch(ctx context.Context, reqs []driver.RefreshRequest) []error {
	if err := f.enter(ctx, "refresh batch"); err != nil {
		errs := make([]error, len(reqs))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	return driver.RefreshBatch(ctx, f.inner, reqs)
}

func unsupported(d driver.Locker, what string) error {
	return fmt.Errorf("conformance: wrapped driver %T cannot %s: %w", d, what, errors.ErrUnsupported)
}
