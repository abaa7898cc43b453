package conformance

import (
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// Harness gives the suite access to one backend under test. [Run] asks for
// a fresh Harness for every case, so cases never see each other's keys.
type Harness struct {
	// NewDriver returns a new client of the backend. All clients made by
	// one Harness see the same locks, as different machines would. The
	// suite closes each client it gets. Required.
	NewDriver func(t *testing.T) driver.Locker

	// Partitioned, if set, returns a client like NewDriver and a function
	// that cuts that client off from the backend (a network partition):
	// after cut, its calls fail or hang until their context ends, while
	// other clients keep working. Cases that need it are skipped when it
	// is nil.
	Partitioned func(t *testing.T) (d driver.Locker, cut func())

	// TTLResolution, if not zero, is the step in which the backend counts
	// TTLs, and so how much longer than its TTL a lock may stay (etcd
	// grants leases in whole seconds, so a 300 ms lock holds its key for
	// a second or more). The holder's lease still ends at the TTL asked
	// for, by its local deadline; but cases that watch a lock expire from
	// the backend's side use a TTL of at least TTLResolution, and give it
	// TTLResolution more to be gone. Zero means TTLs are kept to the
	// millisecond.
	TTLResolution time.Duration
}
