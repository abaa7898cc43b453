package linearize

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// brokenRun is the workload the checker's own tests run on broken
// drivers: Shared, smaller.
var brokenRun = Workload{Lockers: 2, Goroutines: 8, Keys: 4, Duration: 1500 * time.Millisecond, MaxOps: 200, Reopen: 300 * time.Millisecond}

// TestCheckerRejectsBrokenDrivers checks the checker: over memdriver
// wrapped to break the contract in one way, a run must fail. Each wrapper
// forwards handoff, so that dlock waits for turns as it does over a
// correct driver.
func TestCheckerRejectsBrokenDrivers(t *testing.T) {
	for _, tt := range []struct {
		name string
		wrap func(d driver.Locker, holders *holderMap) driver.Locker
		// illegal: the history must be rejected (else keys left held
		// are enough).
		illegal bool
	}{
		// Release frees the key whatever the token: dlock's undo of an
		// attempt, or a lost lease's release, frees another's hold.
		{"ReleaseIgnoresToken", func(d driver.Locker, h *holderMap) driver.Locker {
			return &tokenBlind{passThrough{d}, h}
		}, true},
		// A release hands the key to a waiter, which is never told.
		{"GrantLost", func(d driver.Locker, _ *holderMap) driver.Locker {
			return newRelaying(d, func(driver.Turn) (drop bool, delay time.Duration) { return true, 0 })
		}, false},
		// A grant reaches the waiter late, after its call may have
		// returned: cancel does not wait for it.
		{"GrantAfterReturn", func(d driver.Locker, _ *holderMap) driver.Locker {
			return newRelaying(d, func(driver.Turn) (drop bool, delay time.Duration) { return false, 30 * time.Millisecond })
		}, false},
		// An Acquire whose context ends returns at once, and its command
		// reaches the backend later, after dlock's undo: as a batch
		// written after its callers left.
		{"AcquireAfterReturn", func(d driver.Locker, _ *holderMap) driver.Locker {
			return &lateAcquire{passThrough: passThrough{d}}
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := memBackend(t)
			holders := &holderMap{m: map[string][]string{}}
			inner := b.NewDriver
			b.NewDriver = func(t *testing.T) driver.Locker { return tt.wrap(inner(t), holders) }
			rep := Run(t, b, brokenRun)
			for _, why := range rep.Illegal {
				t.Logf("rejected, as it should be: %.300s", why)
			}
			t.Logf("keys left held: %v", rep.Leftovers)
			switch {
			case tt.illegal && len(rep.Illegal) == 0:
				t.Errorf("porcupine accepted the history of a driver whose Release ignores tokens")
			case !rep.Failed():
				t.Errorf("the run passed over a broken driver: no history rejected, no key left held")
			}
		})
	}
}

// passThrough forwards every capability dlock uses of a memdriver client.
type passThrough struct{ driver.Locker }

func (p passThrough) Subscribe(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	return p.Locker.(driver.Notifier).Subscribe(ctx, key)
}

func (p passThrough) AcquireQueued(ctx context.Context, req driver.Request, q driver.Queued) (driver.Result, error) {
	return p.Locker.(driver.Handoff).AcquireQueued(ctx, req, q)
}

func (p passThrough) SubscribeHandoff(ctx context.Context, key, token string) (<-chan driver.Turn, func(), error) {
	return p.Locker.(driver.Handoff).SubscribeHandoff(ctx, key, token)
}

func (p passThrough) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	return p.Locker.(driver.Inspector).Inspect(ctx, key)
}

func (p passThrough) RefreshBatch(ctx context.Context, reqs []driver.RefreshRequest) []error {
	return driver.RefreshBatch(ctx, p.Locker, reqs)
}

// holderMap is the tokens each key was asked for, by Acquire or
// SubscribeHandoff, latest last, shared by the drivers of one store.
type holderMap struct {
	mu sync.Mutex
	m  map[string][]string
}

func (h *holderMap) note(key, token string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.m[key] = append(h.m[key], token)
}

func (h *holderMap) tokens(key string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.m[key])
}

// tokenBlind releases a key held by another token than the caller's.
type tokenBlind struct {
	passThrough
	holders *holderMap
}

func (d *tokenBlind) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	d.holders.note(req.Key, req.Token)
	return d.Locker.Acquire(ctx, req)
}

func (d *tokenBlind) AcquireQueued(ctx context.Context, req driver.Request, q driver.Queued) (driver.Result, error) {
	d.holders.note(req.Key, req.Token)
	return d.passThrough.AcquireQueued(ctx, req, q)
}

func (d *tokenBlind) Release(ctx context.Context, key, token string) error {
	err := d.Locker.Release(ctx, key, token)
	if !errors.Is(err, driver.ErrNotHeld) {
		return err
	}
	toks := d.holders.tokens(key)
	for i := len(toks) - 1; i >= 0; i-- {
		if toks[i] != token && d.Locker.Release(ctx, key, toks[i]) == nil {
			return nil
		}
	}
	return err
}

// relaying hands its subscriptions' turns on through a goroutine that
// may drop or delay grants; its cancel does not wait for a delayed one.
type relaying struct {
	passThrough
	alter func(driver.Turn) (drop bool, delay time.Duration)
	wg    sync.WaitGroup
}

func newRelaying(d driver.Locker, alter func(driver.Turn) (bool, time.Duration)) *relaying {
	return &relaying{passThrough: passThrough{d}, alter: alter}
}

func (d *relaying) SubscribeHandoff(ctx context.Context, key, token string) (<-chan driver.Turn, func(), error) {
	in, cancel, err := d.passThrough.SubscribeHandoff(ctx, key, token)
	if err != nil {
		return nil, nil, err
	}
	out := make(chan driver.Turn, 1)
	stop := make(chan struct{})
	d.wg.Go(func() {
		for {
			select {
			case t := <-in:
				if !t.Granted {
					select {
					case out <- t:
					default:
					}
					continue
				}
				drop, delay := d.alter(t)
				if drop {
					continue
				}
				time.Sleep(delay)
				select {
				case <-out: // a grant replaces a wake-up
				default:
				}
				out <- t
			case <-stop:
				return
			}
		}
	})
	var once sync.Once
	return out, func() {
		once.Do(func() {
			cancel()
			close(stop)
		})
	}, nil
}

// Close waits for the relays, which end at their subscription's cancel,
// after a delayed grant.
func (d *relaying) Close() error {
	err := d.Locker.Close()
	d.wg.Wait()
	return err
}

// lateAcquire makes an attempt (Acquire or AcquireQueued) whose context
// has a deadline reach the store a millisecond after that deadline, and
// returns the context's error at the deadline.
type lateAcquire struct {
	passThrough
	wg sync.WaitGroup
}

func (d *lateAcquire) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	return d.late(ctx, func(ctx context.Context) (driver.Result, error) { return d.Locker.Acquire(ctx, req) })
}

func (d *lateAcquire) AcquireQueued(ctx context.Context, req driver.Request, q driver.Queued) (driver.Result, error) {
	return d.late(ctx, func(ctx context.Context) (driver.Result, error) { return d.passThrough.AcquireQueued(ctx, req, q) })
}

// late makes the attempt acquire late, if ctx has a deadline.
func (d *lateAcquire) late(ctx context.Context, acquire func(context.Context) (driver.Result, error)) (driver.Result, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		return acquire(ctx)
	}
	d.wg.Go(func() {
		time.Sleep(time.Until(dl) + time.Millisecond)
		acquire(context.WithoutCancel(ctx))
	})
	<-ctx.Done()
	return driver.Result{}, ctx.Err()
}

// Close waits for the Acquires on their way.
func (d *lateAcquire) Close() error {
	d.wg.Wait()
	return d.Locker.Close()
}
