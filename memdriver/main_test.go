package memdriver_test

import (
	"testing"

	"github.com/dlock-go/dlock"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// soleHolder returns the one holder of a lock that Locker.Holders
// reported, and whether there is one.
func soleHolder(hs []dlock.Holder, err error) (dlock.Holder, bool, error) {
	if err != nil || len(hs) == 0 {
		return dlock.Holder{}, false, err
	}
	return hs[0], true, nil
}
