package driver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/dlock-go/dlock/driver"
)

type timeoutErr struct{ timeout bool }

func (e timeoutErr) Error() string   { return "i/o timeout" }
func (e timeoutErr) Timeout() bool   { return e.timeout }
func (e timeoutErr) Temporary() bool { return e.timeout }

func TestOutcomeUnknown(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("WRONGTYPE"), false},
		{driver.ErrNotHeld, false},
		{fmt.Errorf("drv: %w", driver.ErrUnavailable), false},
		{fmt.Errorf("drv: %w", driver.ErrOutcomeUnknown), true},
		{fmt.Errorf("drv: %w", context.Canceled), true},
		{fmt.Errorf("drv: %w", context.DeadlineExceeded), true},
		{&net.OpError{Op: "read", Err: timeoutErr{true}}, true},
		{timeoutErr{false}, false},
		// A dial that timed out surely sent nothing: unavailable wins.
		{fmt.Errorf("drv: %w: %w", driver.ErrUnavailable, &net.OpError{Op: "dial", Err: timeoutErr{true}}), false},
	} {
		if got := driver.OutcomeUnknown(tt.err); got != tt.want {
			t.Errorf("OutcomeUnknown(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
