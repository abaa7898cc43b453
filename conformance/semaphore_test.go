package conformance

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// mapSemaphore is a small semaphore over a map, shared by the clients of
// one harness, with two deliberate bugs to switch on: extra lets in one
// holder more than the limit (off by one), and noPrune counts expired
// holders against the limit for ever. Its locks come from memdriver.
type mapSemaphore struct {
	driver.Locker
	state   *semState
	extra   int
	noPrune bool
}

type semState struct {
	mu    sync.Mutex
	last  uint64
	keys  map[string]map[string]semSlot
	limit map[string]int
}

type semSlot struct {
	fence   uint64
	expires time.Time
	owner   string
}

func (d mapSemaphore) AcquireSlot(_ context.Context, req driver.Request, limit int) (driver.Result, error) {
	st := d.state
	st.mu.Lock()
	defer st.mu.Unlock()
	now := time.Now()
	slots := st.keys[req.Key]
	if slots == nil {
		slots = map[string]semSlot{}
		st.keys[req.Key] = slots
	}
	if !d.noPrune {
		for tok, sl := range slots {
			if !now.Before(sl.expires) {
				delete(slots, tok)
			}
		}
	}
	if len(slots) > 0 && st.limit[req.Key] != limit {
		return driver.Result{}, driver.ErrLimitMismatch
	}
	if sl, ok := slots[req.Token]; ok && now.Before(sl.expires) {
		sl.expires = now.Add(req.TTL)
		slots[req.Token] = sl
		return driver.Result{Acquired: true, Fence: sl.fence}, nil
	}
	if len(slots) >= limit+d.extra {
		return driver.Result{HolderTTL: time.Millisecond}, nil
	}
	st.last++
	slots[req.Token] = semSlot{fence: st.last, expires: now.Add(req.TTL), owner: req.Owner}
	st.limit[req.Key] = limit
	return driver.Result{Acquired: true, Fence: st.last}, nil
}

func (d mapSemaphore) live(key, token string) bool {
	sl, ok := d.state.keys[key][token]
	return ok && time.Now().Before(sl.expires)
}

func (d mapSemaphore) RefreshSlot(_ context.Context, key, token string, ttl time.Duration) error {
	d.state.mu.Lock()
	defer d.state.mu.Unlock()
	if !d.live(key, token) {
		return driver.ErrNotHeld
	}
	sl := d.state.keys[key][token]
	sl.expires = time.Now().Add(ttl)
	d.state.keys[key][token] = sl
	return nil
}

func (d mapSemaphore) RefreshSlots(ctx context.Context, reqs []driver.RefreshRequest) []error {
	return driver.RefreshSlotsOneByOne(ctx, d, reqs)
}

func (d mapSemaphore) ReleaseSlot(_ context.Context, key, token string) error {
	d.state.mu.Lock()
	defer d.state.mu.Unlock()
	if !d.live(key, token) {
		return driver.ErrNotHeld
	}
	delete(d.state.keys[key], token)
	return nil
}

func (d mapSemaphore) InspectSlots(_ context.Context, key string) ([]driver.Holder, int, error) {
	return nil, 0, nil // not checked by the broken-driver tests
}

func mapSemaphoreHarness(extra int, noPrune bool) func(*testing.T) *Harness {
	return func(*testing.T) *Harness {
		store := memdriver.NewStore()
		st := &semState{keys: map[string]map[string]semSlot{}, limit: map[string]int{}}
		return &Harness{NewDriver: func(*testing.T) driver.Locker {
			return mapSemaphore{Locker: store.Driver(), state: st, extra: extra, noPrune: noPrune}
		}}
	}
}

// TestSemaphoreSuiteCatchesBrokenDrivers runs the semaphore cases against a
// correct map semaphore (they pass) and against broken ones (the cases
// named fail).
func TestSemaphoreSuiteCatchesBrokenDrivers(t *testing.T) {
	caseNamed := func(name string) testCase {
		for _, c := range semaphoreCases() {
			if c.name == name {
				return c
			}
		}
		t.Fatalf("no case %s", name)
		return testCase{}
	}
	for _, tc := range []struct {
		name    string
		extra   int
		noPrune bool
		want    map[string]string
	}{
		{"Correct", 0, false, map[string]string{
			"SemaphoreLimit": "pass", "SemaphoreConcurrentAcquirers": "pass", "SemaphoreExpiryFreesSlot": "pass",
			"SemaphoreReleaseFreesSlot": "pass", "SemaphoreOneSlotPerToken": "pass", "SemaphoreLimitMismatch": "pass",
		}},
		{"OffByOneLimit", 1, false, map[string]string{
			"SemaphoreLimit": "fail", "SemaphoreReleaseFreesSlot": "fail", "SemaphoreOneSlotPerToken": "fail",
		}},
		{"NeverPrunes", 0, true, map[string]string{
			"SemaphoreExpiryFreesSlot": "fail", "SemaphoreRefusedRefreshFreesSlot": "fail",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for name, want := range tc.want {
				r := record(t, caseNamed(name), mapSemaphoreHarness(tc.extra, tc.noPrune))
				if got := r.outcome(); got != want {
					t.Errorf("%s on %s: %s, want %s; log:\n%v", name, tc.name, got, want, r.msgs)
				}
			}
		})
	}
}

// TestSemaphoreSkippedWithoutCapability checks that a driver without
// driver.Semaphore skips the semaphore cases rather than failing them.
func TestSemaphoreSkippedWithoutCapability(t *testing.T) {
	for _, c := range semaphoreCases() {
		r := record(t, c, memHarness(func(d driver.Locker, _ *sync.Map) driver.Locker { return bareLocker{d} }))
		if got := r.outcome(); got != "skip" {
			t.Errorf("%s over a driver without driver.Semaphore: %s, want skip", c.name, got)
		}
	}
}

// bareLocker hides every capability of its driver.
type bareLocker struct{ driver.Locker }

func isSemaphoreCase(name string) bool {
	for _, c := range semaphoreCases() {
		if c.name == name {
			return true
		}
	}
	return false
}

// hasSemaphore reports whether the harness's drivers implement
// driver.Semaphore.
func hasSemaphore(t *testing.T, newHarness func(*testing.T) *Harness) bool {
	d := newHarness(t).NewDriver(t)
	defer d.Close()
	sem, ok := d.(driver.Semaphore)
	if !ok {
		return false
	}
	_, _, err := sem.InspectSlots(context.Background(), "probe")
	return !errors.Is(err, errors.ErrUnsupported)
}

// semaphoreCases are the cases that check driver.Semaphore: those whose
// names start with "Semaphore".
func semaphoreCases() []testCase {
	var sem []testCase
	for _, c := range cases {
		if strings.HasPrefix(c.name, "Semaphore") {
			sem = append(sem, c)
		}
	}
	return sem
}
