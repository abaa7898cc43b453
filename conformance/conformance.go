// Package conformance is the test suite every dlock driver passes, exported
// so that drivers written outside this module can run it too, the way
// nettest.TestConn checks a net.Conn and slogtest.Run checks a slog.Handler.
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, func(t *testing.T) *conformance.Harness {
//			return &conformance.Harness{
//				NewDriver: func(t *testing.T) driver.Locker { return mydriver.NewClient(addr) },
//			}
//		})
//	}
//
// [Run] checks the contract of package driver: mutual exclusion, tokens,
// TTLs, fences, the optional capabilities the driver has (found by type
// assertion), and, through package dlock, waiting, wakeups, renewal and
// loss detection. Each case is a subtest named after the rule it checks; a
// failure says which rule broke.
//
// The suite needs a few seconds of real time per backend: it uses TTLs of a
// few hundred milliseconds, and timing bounds generous enough for a loaded
// machine under the race detector. It assumes nothing of fence values but
// their order, and uses key names unique to each run, so a backend may be
// shared with other tests and earlier runs.
//
// [FaultyDriver] wraps any driver to inject partitions, refusals and
// latency; it provides [Harness.Partitioned] for in-process drivers and
// fails single nodes in tests of composed drivers.
//
// # Safety
//
// Run must be called from the test's goroutine, as t.Run must. A
// [FaultyDriver] is safe for concurrent use.
package conformance

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
)

// Run runs the conformance suite: one subtest per case, in order, each with
// a fresh Harness from newHarness. Cases that need an optional capability
// the driver lacks (found by type assertion, or told by an error wrapping
// errors.ErrUnsupported) or a nil [Harness.Partitioned] are skipped. A
// failing case logs the contract it checks.
func Run(t *testing.T, newHarness func(t *testing.T) *Harness) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runCase(stdT{t}, c, newHarness)
		})
	}
}

// tb is the part of *testing.T the cases use. Run passes a real subtest;
// the suite's own tests pass a recorder, so that they can check that the
// suite fails for broken drivers without failing themselves.
type tb interface {
	Helper()
	Name() string
	Context() context.Context
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Logf(format string, args ...any)
	Failed() bool
	// std returns the *testing.T to pass to Harness functions.
	std() *testing.T
}

type stdT struct{ *testing.T }

func (t stdT) std() *testing.T { return t.T }

// A testCase checks one rule of the contract.
type testCase struct {
	name        string // PascalCase, the subtest's name
	explanation string // the contract it checks, shown on failure
	run         func(s *suite)
}

// Timing of the cases. Waits for things that should happen "at once" are
// bounded by slack, which is long enough for a loaded machine running under
// the race detector and short enough that a broken driver fails quickly.
const (
	shortTTL    = 300 * time.Millisecond // for locks a case waits to expire
	longTTL     = 30 * time.Second       // for locks that must outlive a case
	slack       = 2 * time.Second
	caseTimeout = time.Minute
	pollEvery   = 10 * time.Millisecond
)

func runCase(t tb, c testCase, newHarness func(t *testing.T) *Harness) {
	t.Helper()
	h := newHarness(t.std())
	if h == nil || h.NewDriver == nil {
		t.Fatalf("conformance: newHarness returned no Harness.NewDriver")
	}
	ctx, cancel := context.WithTimeout(t.Context(), caseTimeout)
	defer cancel()
	s := &suite{tb: t, h: h, ctx: ctx, prefix: fmt.Sprintf("dlock-conformance/%s/%s", t.Name(), rand.Text()[:8])}
	defer func() {
		if t.Failed() {
			t.Logf("contract %s: %s", c.name, c.explanation)
		}
	}()
	c.run(s)
}

// suite is what a case works with: the test, the harness and helpers.
type suite struct {
	tb
	h      *Harness
	ctx    context.Context // ends at caseTimeout
	prefix string          // unique to this run of this case
}

// key returns a key name unique to this run of the case.
func (s *suite) key(name string) string { return s.prefix + "/" + name }

// driver returns a new client, closed when the case ends.
func (s *suite) driver() driver.Locker {
	s.Helper()
	d := s.rawDriver()
	s.Cleanup(func() { d.Close() })
	return d
}

// rawDriver returns a new client that the caller closes, usually by handing
// it to [suite.locker].
func (s *suite) rawDriver() driver.Locker {
	s.Helper()
	d := s.h.NewDriver(s.std())
	if d == nil {
		s.Fatalf("Harness.NewDriver returned nil")
	}
	return d
}

// locker returns a dlock.Locker over d, closed (with d) when the case ends.
func (s *suite) locker(d driver.Locker, opts *dlock.Options) *dlock.Locker {
	l := dlock.New(d, opts)
	s.Cleanup(func() { l.Close() })
	return l
}

func token() string { return rand.Text() }

// attempt makes one Acquire and fails the case on error.
func (s *suite) attempt(d driver.Locker, key, tok string, ttl time.Duration) driver.Result {
	s.Helper()
	res, err := d.Acquire(s.ctx, driver.Request{Key: key, Token: tok, TTL: ttl, Owner: "conformance"})
	if err != nil {
		s.Fatalf("Acquire(%q) failed: %v", key, err)
	}
	return res
}

// mustAcquire takes a key that must be free, and returns its fence.
func (s *suite) mustAcquire(d driver.Locker, key, tok string, ttl time.Duration) uint64 {
	s.Helper()
	res := s.attempt(d, key, tok, ttl)
	if !res.Acquired {
		s.Fatalf("Acquire of a free key = %+v: a free key must be granted", res)
	}
	return res.Fence
}

// mustBeBusy checks that another token cannot take key.
func (s *suite) mustBeBusy(d driver.Locker, key, why string) driver.Result {
	s.Helper()
	tok := token()
	res := s.attempt(d, key, tok, longTTL)
	if res.Acquired {
		s.Errorf("another token acquired %q: %s", key, why)
		d.Release(s.ctx, key, tok)
	}
	return res
}

// mustRelease releases a key the token holds.
func (s *suite) mustRelease(d driver.Locker, key, tok string) {
	s.Helper()
	if err := d.Release(s.ctx, key, tok); err != nil {
		s.Fatalf("Release by the holder failed: %v", err)
	}
}

// awaitFree polls until tok acquires key, for at most until; it returns the
// grant's fence and the time the reply came.
func (s *suite) awaitFree(d driver.Locker, key, tok string, until time.Time, why string) (uint64, time.Time) {
	s.Helper()
	for {
		res := s.attempt(d, key, tok, longTTL)
		if res.Acquired {
			return res.Fence, time.Now()
		}
		if time.Now().After(until) {
			s.Fatalf("%q still held at %v: %s", key, time.Now().Format(time.StampMilli), why)
		}
		sleep(s.ctx, pollEvery)
	}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// sleepUntil waits until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) { sleep(ctx, time.Until(t)) }
