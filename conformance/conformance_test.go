package conformance

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// recorder is a tb that records failures and skips instead of reporting
// them, so that the suite's own tests can run it against broken drivers and
// check that it fails. Like testing.T, Fatalf and Skipf end the calling
// goroutine with runtime.Goexit, and cleanups run after the case, last
// registered first.
type recorder struct {
	t      *testing.T // the real test; Harness functions get it
	name   string
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	failed   bool
	skipped  bool
	msgs     []string
	cleanups []func()
}

func (r *recorder) Helper()                  {}
func (r *recorder) Name() string             { return r.name }
func (r *recorder) Context() context.Context { return r.ctx }
func (r *recorder) std() *testing.T          { return r.t }

func (r *recorder) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

func (r *recorder) log(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}

func (r *recorder) Logf(format string, args ...any) { r.log(format, args...) }

func (r *recorder) Errorf(format string, args ...any) {
	r.log(format, args...)
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Skipf(format string, args ...any) {
	r.log(format, args...)
	r.mu.Lock()
	r.skipped = true
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// outcome of one case: "pass", "fail" or "skip".
func (r *recorder) outcome() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.failed:
		return "fail"
	case r.skipped:
		return "skip"
	}
	return "pass"
}

// record runs one case on a recorder.
func record(t *testing.T, c testCase, newHarness func(*testing.T) *Harness) *recorder {
	ctx, cancel := context.WithCancel(context.Background())
	r := &recorder{t: t, name: t.Name() + "/" + c.name, ctx: ctx, cancel: cancel}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			r.cancel()
			for i := len(r.cleanups) - 1; i >= 0; i-- {
				r.cleanups[i]()
			}
		}()
		runCase(r, c, newHarness)
	}()
	<-done
	return r
}

// memHarness returns harnesses over a fresh memdriver store, with every
// client wrapped by wrap (nil for none). Clients of one harness share one
// store and one shared value, which wrap may use to keep state across them.
func memHarness(wrap func(d driver.Locker, shared *sync.Map) driver.Locker) func(*testing.T) *Harness {
	return func(*testing.T) *Harness {
		s := memdriver.NewStore()
		shared := new(sync.Map)
		newDriver := func(*testing.T) driver.Locker {
			if wrap == nil {
				return s.Driver()
			}
			return wrap(s.Driver(), shared)
		}
		return &Harness{
			NewDriver: newDriver,
			Partitioned: func(t *testing.T) (driver.Locker, func()) {
				f := Faulty(newDriver(t))
				return f, f.Partition
			},
		}
	}
}

// ignoresTokens releases and refreshes a key whatever token it is given.
type ignoresTokens struct {
	driver.Locker
	tokens *sync.Map // key → the token that last acquired it
}

func (d ignoresTokens) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	res, err := d.Locker.Acquire(ctx, req)
	if err == nil && res.Acquired {
		d.tokens.Store(req.Key, req.Token)
	}
	return res, err
}

func (d ignoresTokens) holder(key, token string) string {
	if t, ok := d.tokens.Load(key); ok {
		return t.(string)
	}
	return token
}

func (d ignoresTokens) Release(ctx context.Context, key, token string) error {
	return d.Locker.Release(ctx, key, d.holder(key, token))
}

func (d ignoresTokens) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	return d.Locker.Refresh(ctx, key, d.holder(key, token), ttl)
}

// neverExpires keeps every lock for ever (well, a thousand hours).
type neverExpires struct{ driver.Locker }

const forever = 1000 * time.Hour

func (d neverExpires) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	req.TTL = forever
	return d.Locker.Acquire(ctx, req)
}

func (d neverExpires) Refresh(ctx context.Context, key, token string, _ time.Duration) error {
	return d.Locker.Refresh(ctx, key, token, forever)
}

// halvesTTL keeps locks for half the TTL asked: the backend frees keys
// before their holders expect.
type halvesTTL struct{ driver.Locker }

func (d halvesTTL) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	req.TTL /= 2
	return d.Locker.Acquire(ctx, req)
}

func (d halvesTTL) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	return d.Locker.Refresh(ctx, key, token, ttl/2)
}

// constantFence grants every lock the same fence, and declares fence
// floors.
type constantFence struct{ declaresFloors }

func (d constantFence) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	res, err := d.Locker.Acquire(ctx, req)
	if res.Acquired {
		res.Fence = 7
	}
	return res, err
}

func (d constantFence) AcquireFloor(ctx context.Context, req driver.Request, floor uint64) (driver.Result, error) {
	res, err := d.declaresFloors.AcquireFloor(ctx, req, floor)
	if res.Acquired {
		res.Fence = 7
	}
	return res, err
}

// neverWakes is a Notifier whose subscriptions never fire.
type neverWakes struct{ driver.Locker }

func (neverWakes) Subscribe(context.Context, string) (<-chan struct{}, func(), error) {
	return make(chan struct{}), func() {}, nil
}

// refreshNeverShortens ignores a Refresh to a TTL shorter than the one the
// key was acquired with.
type refreshNeverShortens struct {
	driver.Locker
	ttls *sync.Map // key → TTL of the last grant
}

func (d refreshNeverShortens) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	res, err := d.Locker.Acquire(ctx, req)
	if err == nil && res.Acquired {
		d.ttls.Store(req.Key, req.TTL)
	}
	return res, err
}

func (d refreshNeverShortens) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	if v, ok := d.ttls.Load(key); ok {
		ttl = max(ttl, v.(time.Duration))
	}
	return d.Locker.Refresh(ctx, key, token, ttl)
}

// floorGoesDown grants exactly the floor when it is below the key's last
// fence.
type floorGoesDown struct{ declaresFloors }

// declaresFloors offers fence floors (redlock.FloorAcquirer) and hides
// every other capability: AcquireFloor is the inner driver's.
type declaresFloors struct{ driver.Locker }

func (d declaresFloors) AcquireFloor(ctx context.Context, req driver.Request, floor uint64) (driver.Result, error) {
	return d.Locker.(floorAcquirer).AcquireFloor(ctx, req, floor)
}

// ignoresFloor offers fence floors and drops them.
type ignoresFloor struct{ declaresFloors }

func (d ignoresFloor) AcquireFloor(ctx context.Context, req driver.Request, _ uint64) (driver.Result, error) {
	return d.Acquire(ctx, req)
}

func (d floorGoesDown) AcquireFloor(ctx context.Context, req driver.Request, floor uint64) (driver.Result, error) {
	res, err := d.declaresFloors.AcquireFloor(ctx, req, floor)
	if err == nil && res.Acquired && floor+1 < res.Fence {
		res.Fence = floor
	}
	return res, err
}

// cannotBatch implements BatchRefresher and answers ErrUnsupported for
// every request, as a wrapper over a driver that cannot batch may.
type cannotBatch struct{ driver.Locker }

func (cannotBatch) RefreshBatch(_ context.Context, reqs []driver.RefreshRequest) []error {
	errs := make([]error, len(reqs))
	for i := range errs {
		errs[i] = fmt.Errorf("cannot batch: %w", errors.ErrUnsupported)
	}
	return errs
}

// flakyInspect answers ErrUnsupported from its first Inspect, and then
// inspects.
type flakyInspect struct {
	driver.Locker
	calls atomic.Int32
}

func (d *flakyInspect) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	if d.calls.Add(1) == 1 {
		return driver.Holder{}, false, fmt.Errorf("not now: %w", errors.ErrUnsupported)
	}
	return d.Locker.(driver.Inspector).Inspect(ctx, key)
}

// grant is what the broken drivers below remember of a key's last grant.
type grant struct {
	token   string
	holder  driver.Holder
	expires time.Time
}

// remembers notes every grant in a shared map, and forgets it at the
// holder's Release.
type remembers struct {
	driver.Locker
	grants *sync.Map // key → grant
}

func (d remembers) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	res, err := d.Locker.Acquire(ctx, req)
	if err == nil && res.Acquired {
		now := time.Now()
		d.grants.Store(req.Key, grant{req.Token, driver.Holder{Owner: req.Owner, Fence: res.Fence, TTL: req.TTL, Since: now}, now.Add(req.TTL)})
	}
	return res, err
}

func (d remembers) forget(key, token string, err error) {
	if v, ok := d.grants.Load(key); ok && err == nil && v.(grant).token == token {
		d.grants.Delete(key)
	}
}

// releasesExpired lets any token release a key whose holder expired, as a
// release script that deletes a key when it is missing or the token matches
// would.
type releasesExpired struct{ remembers }

func (d releasesExpired) Release(ctx context.Context, key, token string) error {
	err := d.Locker.Release(ctx, key, token)
	if v, ok := d.grants.Load(key); ok && errors.Is(err, driver.ErrNotHeld) && v.(grant).token != token && !time.Now().Before(v.(grant).expires) {
		return nil
	}
	d.forget(key, token, err)
	return err
}

// staleInspect reports the last holder of a key until it is released,
// also after it expired.
type staleInspect struct{ remembers }

func (d staleInspect) Release(ctx context.Context, key, token string) error {
	err := d.Locker.Release(ctx, key, token)
	d.forget(key, token, err)
	return err
}

func (d staleInspect) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	h, held, err := d.Locker.(driver.Inspector).Inspect(ctx, key)
	if v, ok := d.grants.Load(key); ok && err == nil && !held {
		return v.(grant).holder, true, nil
	}
	return h, held, err
}

// unknownHolderTTL leaves Result.HolderTTL zero, as a backend that does
// not know when the holder's lock expires.
type unknownHolderTTL struct{ driver.Locker }

func (d unknownHolderTTL) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	res, err := d.Locker.Acquire(ctx, req)
	res.HolderTTL = 0
	return res, err
}

// unavailableAfterGrant applies an Acquire whose context has ended and
// reports ErrUnavailable, which promises that it was not applied.
type unavailableAfterGrant struct{ driver.Locker }

func (d unavailableAfterGrant) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	if ctx.Err() == nil {
		return d.Locker.Acquire(ctx, req)
	}
	d.Locker.Acquire(context.WithoutCancel(ctx), req)
	return driver.Result{}, fmt.Errorf("broken: %w", driver.ErrUnavailable)
}

// capabilityCases are the cases that need an optional capability.
var capabilityCases = slices.Concat([]string{"FenceFloor", "FenceFloorBelowLast", "Inspect", "InspectAfterExpiry", "RefreshBatch", "RaiseFence", "ReleaseWakesWaiter", "WaitersServedInTurn"}, handoffCases, []string{"UnsupportedMeansAbsent"})

// emuSkips are the cases an emuHandoff skips: it hides the capabilities
// the handoff cases do not need.
var emuSkips = []string{"FenceFloor", "FenceFloorBelowLast", "RefreshBatch", "RaiseFence", "UnsupportedMeansAbsent"}

// emuHarness returns harnesses whose clients are emuHandoffs with flaw.
func emuHarness(flaw handoffFlaw) func(*testing.T) *Harness {
	return memHarness(func(d driver.Locker, m *sync.Map) driver.Locker { return newEmuHandoff(d, m, flaw) })
}

// TestSuite runs the suite on a recorder against correct and broken
// drivers, and checks which cases pass, fail and skip.
func TestSuite(t *testing.T) {
	tests := []struct {
		name       string
		newHarness func(*testing.T) *Harness
		fail       []string // cases that must fail; all others must not
		mayFail    []string // cases that may fail too, as a consequence
		skip       []string // cases that must be skipped
	}{
		{
			name:       "Memdriver",
			newHarness: memHarness(nil),
			skip:       []string{"UnsupportedMeansAbsent"}, // no capability is unsupported
		},
		{
			name: "FaultyHealthy",
			newHarness: memHarness(func(d driver.Locker, _ *sync.Map) driver.Locker {
				return Faulty(d)
			}),
			skip: []string{"UnsupportedMeansAbsent"},
		},
		{
			// Without capabilities, their cases are skipped by type
			// assertion, or by ErrUnsupported through FaultyDriver.
			name: "NoCapabilities",
			newHarness: memHarness(func(d driver.Locker, _ *sync.Map) driver.Locker {
				return struct{ driver.Locker }{d}
			}),
			skip: capabilityCases,
		},
		{
			name: "FaultyNoCapabilities",
			newHarness: memHarness(func(d driver.Locker, _ *sync.Map) driver.Locker {
				return Faulty(struct{ driver.Locker }{d})
			}),
			skip: slices.Concat([]string{"FenceFloor", "FenceFloorBelowLast", "Inspect", "InspectAfterExpiry", "RaiseFence", "ReleaseWakesWaiter", "WaitersServedInTurn"}, handoffCases), // RefreshBatch is emulated
		},
		{
			name: "NoPartition",
			newHarness: func(t *testing.T) *Harness {
				h := memHarness(nil)(t)
				h.Partitioned = nil
				return h
			},
			skip: []string{"LeaseLostBeforeExpiry", "SemaphoreLeaseLostBeforeExpiry", "UnsupportedMeansAbsent"},
		},
		{
			name: "IgnoresTokens",
			newHarness: memHarness(func(d driver.Locker, m *sync.Map) driver.Locker {
				return ignoresTokens{d, m}
			}),
			fail:    []string{"ReleaseWrongToken", "RefreshWrongToken"},
			mayFail: []string{"MutualExclusion"},
			skip:    capabilityCases,
		},
		{
			// Zero HolderTTL means the driver does not know the holder's
			// expiry, as driver.Result says: allowed, and its case skipped.
			name: "HolderTTLUnknown",
			newHarness: memHarness(func(d driver.Locker, _ *sync.Map) driver.Locker {
				return unknownHolderTTL{d}
			}),
			skip: slices.Concat(capabilityCases, []string{"HolderTTLReported"}),
		},
		{
			name: "NeverExpires",
			newHarness: memHarness(func(d driver.Locker, _ *sync.Map) driver.Locker {
				return neverExpires{d}
			}),
			fail:    []string{"ExpiryFreesKey", "RefreshShorterTTL", "RefreshAfterExpiryFails", "FencesIncreaseAfterExpiry", "HolderTTLReported"},
			mayFail: []string{"RefreshExtends"},
			skip:    capabilityCases,
		},
		{
			name: "FreesEarly",
			newHarness: memHarness(func(d driver.Locker, _ *sync.Map) driver.Locker {
				return halvesTTL{d}
			}),
			fail:    []string{"ExpiryFreesKey", "LeaseLostBeforeExpiry"},
			mayFail: []string{"RefreshExtends", "SameTokenIdempotent"},
			skip:    capabilityCases,
		},
		{
			name: "ConstantFence",
			newHarness: memHarness(func(d driver.Locker, _ *sync.Map) driver.Locker {
				return constantFence{declaresFloors{d}}
			}),
			fail: []string{"FencesIncrease", "FencesIncreaseAfterExpiry", "FenceFloor", "FenceFloorBelowLast", "ContendedNoOverlap"},
			skip: capabilityCases[2:], // it declares fence floors (fence 7 for any floor)
		},
		{
			name: "NeverWakes",
			newHarness: memHarness(func(d driver.Locker, _ *sync.Map) driver.Locker {
				return neverWakes{d}
			}),
			fail: []string{"ReleaseWakesWaiter", "WaitersServedInTurn"},
			skip: slices.Concat([]string{"FenceFloor", "FenceFloorBelowLast", "Inspect", "InspectAfterExpiry", "RefreshBatch", "RaiseFence", "UnsupportedMeansAbsent"}, handoffCases),
		},
		{
			name: "RefreshNeverShortens",
			newHarness: memHarness(func(d driver.Locker, m *sync.Map) driver.Locker {
				return refreshNeverShortens{d, m}
			}),
			fail: []string{"RefreshShorterTTL"},
			skip: capabilityCases,
		},
		{
			name: "FloorGoesDown",
			newHarness: memHarness(func(d driver.Locker, _ *sync.Map) driver.Locker {
				return floorGoesDown{declaresFloors{d}}
			}),
			fail: []string{"FenceFloorBelowLast"},
			skip: capabilityCases[2:], // it declares fence floors
		},
		{
			// It declares fence floors and ignores them.
			name: "IgnoresFloor",
			newHarness: memHarness(func(d driver.Locker, _ *sync.Map) driver.Locker {
				return ignoresFloor{declaresFloors{d}}
			}),
			fail: []string{"FenceFloor", "FenceFloorBelowLast"},
			skip: capabilityCases[2:],
		},
		{
			name: "ReleasesExpired",
			newHarness: memHarness(func(d driver.Locker, m *sync.Map) driver.Locker {
				return releasesExpired{remembers{d, m}}
			}),
			fail: []string{"ReleaseWrongTokenExpired"},
			skip: capabilityCases,
		},
		{
			name: "StaleInspect",
			newHarness: memHarness(func(d driver.Locker, m *sync.Map) driver.Locker {
				return staleInspect{remembers{d, m}}
			}),
			fail: []string{"InspectAfterExpiry"},
			skip: slices.Concat([]string{"FenceFloor", "FenceFloorBelowLast", "RefreshBatch", "RaiseFence", "ReleaseWakesWaiter", "WaitersServedInTurn", "UnsupportedMeansAbsent"}, handoffCases),
		},
		{
			name: "UnavailableAfterGrant",
			newHarness: memHarness(func(d driver.Locker, _ *sync.Map) driver.Locker {
				return unavailableAfterGrant{d}
			}),
			fail: []string{"UnknownOutcomeUndone"},
			skip: capabilityCases,
		},
		{
			// A cut that does not cut: the lease is never lost.
			name: "PartitionIgnored",
			newHarness: func(t *testing.T) *Harness {
				h := memHarness(nil)(t)
				h.Partitioned = func(t *testing.T) (driver.Locker, func()) { return h.NewDriver(t), func() {} }
				return h
			},
			fail: []string{"LeaseLostBeforeExpiry", "SemaphoreLeaseLostBeforeExpiry"},
			skip: []string{"UnsupportedMeansAbsent"},
		},
		{
			// A wrapper that cannot batch, and says so by the rule for
			// wrapping drivers: dlock refreshes key by key.
			name: "BatchUnsupported",
			newHarness: memHarness(func(d driver.Locker, _ *sync.Map) driver.Locker {
				return cannotBatch{d}
			}),
			skip: slices.Concat([]string{"FenceFloor", "FenceFloorBelowLast", "Inspect", "InspectAfterExpiry", "RefreshBatch", "RaiseFence", "ReleaseWakesWaiter", "WaitersServedInTurn"}, handoffCases),
		},
		{
			// A wrapper whose Inspect answers ErrUnsupported once, and
			// then works: a capability is either offered or not.
			name: "FlakyUnsupported",
			newHarness: memHarness(func(d driver.Locker, _ *sync.Map) driver.Locker {
				return &flakyInspect{Locker: d}
			}),
			fail: []string{"UnsupportedMeansAbsent"},
			skip: capabilityCases[:len(capabilityCases)-1],
		},
		{
			// The emulated handoff of the broken ones below, unbroken.
			name:       "EmulatedHandoff",
			newHarness: emuHarness(flawless),
			skip:       emuSkips,
		},
		{
			name:       "HandoffLIFO",
			newHarness: emuHarness(lifo),
			fail:       []string{"HandoffInOrder", "HandoffFirstComeLongWait"},
			skip:       emuSkips,
		},
		{
			// Redis before first-come-first-served: its queue was
			// ordered by each waiter's next attempt.
			name:       "HandoffEarliestDeadline",
			newHarness: emuHarness(earliestDeadline),
			fail:       []string{"HandoffFirstComeLongWait"},
			skip:       emuSkips,
		},
		{
			name:       "HandoffToCancelled",
			newHarness: emuHarness(grantsCancelled),
			fail:       []string{"HandoffSkipsCancelled"},
			skip:       emuSkips,
		},
		{
			name:       "HandoffHalvesTTL",
			newHarness: emuHarness(halvesGrantTTL),
			fail:       []string{"HandoffLeaseFromAttempt"},
			skip:       emuSkips,
		},
		{
			name:       "HandoffDropsLateGrant",
			newHarness: emuHarness(dropsLateGrant),
			fail:       []string{"HandoffUnreadGrantReleased"},
			skip:       emuSkips,
		},
		{
			name:       "HandoffToAttemptZero",
			newHarness: emuHarness(grantsAttemptZero),
			fail:       []string{"HandoffNotToAttemptZero"},
			skip:       emuSkips,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range cases {
				r := record(t, c, tt.newHarness)
				want := "pass"
				switch {
				case slices.Contains(tt.fail, c.name):
					want = "fail"
				case slices.Contains(tt.skip, c.name):
					want = "skip"
				case isSemaphoreCase(c.name) && !hasSemaphore(t, tt.newHarness):
					want = "skip" // the wrappers of these tests hide it
				}
				got := r.outcome()
				if got == want || got == "fail" && slices.Contains(tt.mayFail, c.name) {
					continue
				}
				t.Errorf("%s: %s, want %s; it said:\n\t%s", c.name, got, want, strings.Join(r.msgs, "\n\t"))
			}
		})
	}
}

// TestCases checks the table itself: unique PascalCase names, and an
// explanation for each.
func TestCases(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.name] {
			t.Errorf("case %s appears twice", c.name)
		}
		seen[c.name] = true
		if c.name == "" || c.name[0] < 'A' || c.name[0] > 'Z' || strings.ContainsAny(c.name, " _-/") {
			t.Errorf("case name %q is not PascalCase", c.name)
		}
		if c.explanation == "" || c.run == nil {
			t.Errorf("case %s lacks an explanation or a function", c.name)
		}
	}
}
