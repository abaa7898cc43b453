package conformance_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/conformance"
	"github.com/dlock-go/dlock/driver"
)

// This file is a whole driver: the smallest one the contract allows, which
// passes [conformance.Run]. A fourth backend starts here for what it must
// do, and from memdriver for how a driver package is laid out.

// minimalStore is the backend of minimal: a map under a mutex, on real
// time.
type minimalStore struct {
	mu   sync.Mutex
	keys map[string]*minimalEntry // every key ever locked, for its fences
}

type minimalEntry struct {
	last    uint64 // the last fence granted
	token   string // the holder, or ""
	fence   uint64
	expires time.Time
}

// held reports whether e is held by an unexpired holder at now.
func (e *minimalEntry) held(now time.Time) bool { return e.token != "" && now.Before(e.expires) }

// minimal is the smallest driver the contract allows: driver.Locker and
// no optional capability at all (no notifications, no inspection, no
// batching, no fence raising, no fence floors). It is what a fourth
// backend must at least do, and it passes Run.
type minimal struct {
	s    *minimalStore
	cut  atomic.Bool   // partitioned: calls hang until their context ends
	done chan struct{} // closed by Close
	once sync.Once
}

// newMinimalStore returns an empty backend.
func newMinimalStore() *minimalStore { return &minimalStore{keys: make(map[string]*minimalEntry)} }

// newMinimal returns a new client of s.
func newMinimal(s *minimalStore) *minimal { return &minimal{s: s, done: make(chan struct{})} }

// enter fails a call on a closed or cut-off client, or whose context has
// ended: it was then never applied, but an ended context says "unknown".
func (m *minimal) enter(ctx context.Context) error {
	select {
	case <-m.done:
		return fmt.Errorf("minimal: %w", driver.ErrClosed)
	default:
	}
	if m.cut.Load() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("minimal: partitioned: %w", ctx.Err())
		case <-m.done:
			return fmt.Errorf("minimal: %w", driver.ErrClosed)
		}
	}
	return ctx.Err()
}

func (m *minimal) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	if err := m.enter(ctx); err != nil {
		return driver.Result{}, err
	}
	if req.Token == "" {
		return driver.Result{}, fmt.Errorf("%w: minimal: empty token", driver.ErrInvalid)
	}
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	e := m.s.keys[req.Key]
	if e == nil {
		e = &minimalEntry{}
		m.s.keys[req.Key] = e
	}
	now := time.Now()
	switch {
	case e.held(now) && e.token != req.Token:
		return driver.Result{HolderTTL: e.expires.Sub(now)}, nil
	case !e.held(now):
		e.last++
		e.token, e.fence = req.Token, e.last
	}
	e.expires = now.Add(req.TTL)
	return driver.Result{Acquired: true, Fence: e.fence}, nil
}

// holder returns the entry of key if token holds it, else ErrNotHeld.
// m.s.mu must be held.
func (m *minimal) holder(key, token string) (*minimalEntry, error) {
	if e := m.s.keys[key]; e != nil && e.held(time.Now()) && e.token == token {
		return e, nil
	}
	return nil, fmt.Errorf("minimal: %q: %w", key, driver.ErrNotHeld)
}

func (m *minimal) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	if err := m.enter(ctx); err != nil {
		return err
	}
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	e, err := m.holder(key, token)
	if err == nil {
		e.expires = time.Now().Add(ttl)
	}
	return err
}

func (m *minimal) Release(ctx context.Context, key, token string) error {
	if err := m.enter(ctx); err != nil {
		return err
	}
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	e, err := m.holder(key, token)
	if err == nil {
		e.token = ""
	}
	return err
}

func (m *minimal) Close() error {
	m.once.Do(func() { close(m.done) })
	return nil
}

// minimalHarness is what a driver's test passes to [conformance.Run]: each
// case gets a new backend, whose clients all see the same locks, and a way
// to cut one client off from it.
func minimalHarness(*testing.T) *conformance.Harness {
	s := newMinimalStore()
	return &conformance.Harness{
		NewDriver: func(*testing.T) driver.Locker { return newMinimal(s) },
		Partitioned: func(*testing.T) (driver.Locker, func()) {
			m := newMinimal(s)
			return m, func() { m.cut.Store(true) }
		},
	}
}

// A driver's test runs the suite against its backend:
//
//	func TestConformance(t *testing.T) { conformance.Run(t, minimalHarness) }
//
// (TestMinimalDriver, in this package's tests, does so for the driver in
// this file.) A driver that passes is a backend for [dlock.New]:
func ExampleRun() {
	ctx := context.Background()
	locker := dlock.New(newMinimal(newMinimalStore()), nil)
	defer locker.Close()

	lease, err := locker.TryAcquire(ctx, "report", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("holding", lease.Key(), "with fence", lease.Fence())
	fmt.Println("release:", lease.Release(ctx))
	// Output:
	// holding report with fence 1
	// release: <nil>
}
