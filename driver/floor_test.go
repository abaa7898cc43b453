package driver_test

import (
	"errors"
	"testing"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// floorless hides every capability of a driver.
type floorless struct{ driver.Locker }

// wrapsFloors declares fence floors and answers for its inner driver.
type wrapsFloors struct{ driver.Locker }

func (w wrapsFloors) CheckFenceFloors() error { return driver.CheckFenceFloors(w.Locker) }

func TestCheckFenceFloors(t *testing.T) {
	mem := memdriver.NewStore().Driver()
	defer mem.Close()
	for _, tc := range []struct {
		name string
		d    driver.Locker
		ok   bool
	}{
		{"Memdriver", mem, true},
		{"NotDeclared", floorless{mem}, false},
		{"WrapperOverFloors", wrapsFloors{mem}, true},
		{"WrapperOverNone", wrapsFloors{floorless{mem}}, false},
	} {
		err := driver.CheckFenceFloors(tc.d)
		if tc.ok && err != nil || !tc.ok && !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s: CheckFenceFloors = %v; want ok %v, else ErrUnsupported", tc.name, err, tc.ok)
		}
	}
}
