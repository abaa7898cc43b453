package conformance_test

import (
	"testing"

	"github.com/dlock-go/dlock/conformance"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redlock"
)

// The fence floors of the suite's cases are redlock's (FaultyDriver states
// their method set rather than import redlock).
var _ redlock.FloorAcquirer = (*conformance.FaultyDriver)(nil)

// TestMinimalDriver runs the suite against a driver that implements only
// driver.Locker, bare and behind a FaultyDriver (which implements every
// capability and answers ErrUnsupported for each, by the rule for
// wrapping drivers): it passes, with the capabilities' cases skipped.
func TestMinimalDriver(t *testing.T) {
	var d driver.Locker = newMinimal(nil)
	for name, ok := range map[string]bool{
		"Notifier":       is[driver.Notifier](d),
		"Inspector":      is[driver.Inspector](d),
		"BatchRefresher": is[driver.BatchRefresher](d),
		"FenceRaiser":    is[driver.FenceRaiser](d),
		"FloorAcquirer":  is[redlock.FloorAcquirer](d),
	} {
		if ok {
			t.Fatalf("the minimal driver is a driver.%s; it must have no optional capability", name)
		}
	}
	t.Run("Bare", func(t *testing.T) { conformance.Run(t, minimalHarness) })
	t.Run("Faulty", func(t *testing.T) {
		conformance.Run(t, func(t *testing.T) *conformance.Harness {
			h := minimalHarness(t)
			newDriver, partitioned := h.NewDriver, h.Partitioned
			h.NewDriver = func(t *testing.T) driver.Locker { return conformance.Faulty(newDriver(t)) }
			h.Partitioned = func(t *testing.T) (driver.Locker, func()) {
				d, cut := partitioned(t)
				return conformance.Faulty(d), cut
			}
			return h
		})
	})
}

func is[T any](v any) bool { _, ok := v.(T); return ok }
