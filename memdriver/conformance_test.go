package memdriver_test

import (
	"testing"

	"github.com/dlock-go/dlock/conformance"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T) *conformance.Harness {
		s := memdriver.NewStore()
		return &conformance.Harness{
			NewDriver: func(*testing.T) driver.Locker { return s.Driver() },
			Partitioned: func(*testing.T) (driver.Locker, func()) {
				f := conformance.Faulty(s.Driver())
				return f, f.Partition
			},
		}
	})
}
