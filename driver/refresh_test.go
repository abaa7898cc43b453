package driver_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// oneByOne refreshes only keys starting with "ok", and counts calls at once.
type oneByOne struct {
	driver.Locker // nil: only Refresh is called
	now, most     atomic.Int32
}

func (d *oneByOne) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	n := d.now.Add(1)
	defer d.now.Add(-1)
	for m := d.most.Load(); n > m && !d.most.CompareAndSwap(m, n); m = d.most.Load() {
	}
	time.Sleep(time.Millisecond)
	if strings.HasPrefix(key, "ok") {
		return nil
	}
	return driver.ErrNotHeld
}

type shortBatch struct{ oneByOne }

func (*shortBatch) RefreshBatch(context.Context, []driver.RefreshRequest) []error { return nil }

func TestRefreshBatch(t *testing.T) {
	reqs := make([]driver.RefreshRequest, 100)
	for i := range reqs {
		reqs[i].Key = "gone"
		if i%2 == 0 {
			reqs[i].Key = "ok"
		}
	}
	d := &oneByOne{}
	errs := driver.RefreshBatch(t.Context(), d, reqs)
	if len(errs) != len(reqs) {
		t.Fatalf("%d results for %d requests", len(errs), len(reqs))
	}
	for i, err := range errs {
		if want := i%2 != 0; errors.Is(err, driver.ErrNotHeld) != want {
			t.Errorf("request %d (%s): %v; want the driver's own answer, in order", i, reqs[i].Key, err)
		}
	}
	if m := d.most.Load(); m < 2 || m > 16 {
		t.Errorf("%d Refresh calls at once; want a few in parallel, at most 16", m)
	}
	for _, err := range driver.RefreshBatch(t.Context(), &shortBatch{}, reqs) {
		if err == nil || !strings.Contains(err.Error(), "0 results for 100 requests") {
			t.Fatalf("a batch with too few results gave %v; want every request failed", err)
		}
	}
}

// cannotBatch is a wrapper that implements BatchRefresher but cannot
// batch: it answers every request with ErrUnsupported.
type cannotBatch struct{ oneByOne }

func (*cannotBatch) RefreshBatch(_ context.Context, reqs []driver.RefreshRequest) []error {
	errs := make([]error, len(reqs))
	for i := range errs {
		errs[i] = errors.ErrUnsupported
	}
	return errs
}

// TestRefreshBatchUnsupported: a BatchRefresher that answers
// ErrUnsupported for every request lacks the capability, by the rule for
// wrapping drivers, and is refreshed request by request.
func TestRefreshBatchUnsupported(t *testing.T) {
	reqs := []driver.RefreshRequest{{Key: "ok"}, {Key: "gone"}}
	errs := driver.RefreshBatch(t.Context(), &cannotBatch{}, reqs)
	if len(errs) != 2 || errs[0] != nil || !errors.Is(errs[1], driver.ErrNotHeld) {
		t.Errorf("RefreshBatch over a wrapper that cannot batch = %v; want [nil, ErrNotHeld] from its Refresh", errs)
	}
}
