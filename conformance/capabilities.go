package conformance

import "github.com/dlock-go/dlock/driver"

var _ driver.FenceFloorer = (*FaultyDriver)(nil)

// CheckFenceFloors implements [driver.FenceFloorer]: it answers for the
// wrapped driver, to which Acquire passes Request.FenceFloor unchanged.
func (f *FaultyDriver) CheckFenceFloors() error { return driver.CheckFenceFloors(f.inner) }

// needFenceFloors skips the case unless d declares that it honours
// Request.FenceFloor ([driver.FenceFloorer]): other drivers ignore it.
func (s *suite) needFenceFloors(d driver.Locker) {
	s.Helper()
	if err := driver.CheckFenceFloors(d); err != nil {
		s.Skipf("%v", err)
	}
}
