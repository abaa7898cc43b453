package etcddriver_test

import (
	"testing"
	"time"

	"github.com/dlock-go/dlock/conformance"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
)

// harness runs the suite on c; Partitioned cuts a client off in process
// (conformance.Faulty), before its calls reach etcd.
func harness(c *etcdtest.Cluster) func(t *testing.T) *conformance.Harness {
	return func(t *testing.T) *conformance.Harness {
		return &conformance.Harness{
			TTLResolution: time.Second,
			NewDriver: func(t *testing.T) driver.Locker {
				return etcddriver.NewDriver(c.Client(t), nil)
			},
			Partitioned: func(t *testing.T) (driver.Locker, func()) {
				f := conformance.Faulty(etcddriver.NewDriver(c.Client(t), nil))
				return f, f.Partition
			},
		}
	}
}

func TestConformanceSingle(t *testing.T) {
	conformance.Run(t, harness(etcdtest.Start(t, 1)))
}

func TestConformanceCluster(t *testing.T) {
	conformance.Run(t, harness(etcdtest.Start(t, 3)))
}
