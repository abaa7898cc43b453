package linearize

import (
	"testing"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
)

// TestLinearizableEtcd runs every workload on etcd processes (see
// etcddriver/etcdtest; DLOCK_REQUIRE_ETCD=1 or DLOCK_REQUIRE_REDIS=1
// makes a missing etcd binary a failure): a single member, and a cluster
// of three whose clients spread their calls over every member.
func TestLinearizableEtcd(t *testing.T) {
	for _, size := range []struct {
		name    string
		members int
	}{{"Single", 1}, {"Cluster", 3}} {
		t.Run(size.name, func(t *testing.T) {
			backend := etcdBackend(t, etcdtest.Start(t, size.members))
			t.Run("Owned", func(t *testing.T) { Check(t, backend, Owned) })
			t.Run("Shared", func(t *testing.T) { Check(t, backend, Shared) })
		})
	}
}

// etcdBackend is the etcd cluster c. Each driver has a client of its own
// (its own connections), closed when the test ends; the driver does not
// close it.
func etcdBackend(t *testing.T, c *etcdtest.Cluster) Backend {
	probe := etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { probe.Close() })
	return Backend{
		NewDriver: func(t *testing.T) driver.Locker { return etcddriver.NewDriver(c.Client(t), nil) },
		Held:      HeldOn(probe.(driver.Inspector)),
	}
}
