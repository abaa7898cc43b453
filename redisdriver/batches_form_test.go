package redisdriver_test

import (
	"crypto/rand"
	"testing"

	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
)

// TestBatchesFormAtEightCallers: eight goroutines making acquire+release
// pairs on their own keys, on one driver, share round trips: a call that
// finds another in flight leaves with the calls that came with it, in
// the next flush. Counted in round trips, not time: sent directly, each
// call is one (2 per pair); batched, 0.3 to 0.55 here (GOMAXPROCS 1 or
// 2, with and without -race) and 0.75 on a machine loaded to 7, where
// batches that formed only behind four calls in flight made 0.87 to 0.94.
func TestBatchesFormAtEightCallers(t *testing.T) {
	const goroutines, n = 8, 2000
	for _, m := range []struct {
		name     string
		lanes    int
		min, max float64 // round trips per pair
	}{
		{"batched", redisdriver.MaxInFlightForTest, 0, 0.82},
		{"direct", redisdriver.AllDirectForTest, 2, 2},
	} {
		t.Run(m.name, func(t *testing.T) {
			c := redistest.Shared(t).Client(t)
			trips := &tripCounter{}
			c.AddHook(trips)
			d := redisdriver.NewDriver(c, nil)
			t.Cleanup(func() { d.Close() })
			redisdriver.SetLanesForTest(d, m.lanes, false)
			ctx := testCtx(t)
			base := "batches8/" + rand.Text()
			pairs(t, ctx, d, base, goroutines, 4*goroutines) // scripts loaded, connections dialed
			t0 := trips.n.Load()
			pairs(t, ctx, d, base, goroutines, n)
			perPair := float64(trips.n.Load()-t0) / n
			t.Logf("%s: %.2f round trips per pair", m.name, perPair)
			if perPair < m.min || perPair > m.max {
				t.Errorf("%s, %d goroutines: %.2f round trips per pair, want %.2f to %.2f", m.name, goroutines, perPair, m.min, m.max)
			}
		})
	}
}
