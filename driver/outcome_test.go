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
		// An aggregate that undid its timed-out calls decides for itself,
		// whatever its causes say.
		{fmt.Errorf("q: %w", aggregateErr{unknown: false, errs: []error{context.DeadlineExceeded, timeoutErr{true}}}), false},
		{aggregateErr{unknown: true, errs: []error{driver.ErrUnavailable}}, true},
	} {
		if got := driver.OutcomeUnknown(tt.err); got != tt.want {
			t.Errorf("OutcomeUnknown(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// aggregateErr is an error of several calls that decides for itself whether
// its outcome is unknown, as a quorum driver's does.
type aggregateErr struct {
	unknown bool
	errs    []error
}

func (e aggregateErr) Error() string        { return "quorum not reached" }
func (e aggregateErr) Unwrap() []error      { return e.errs }
func (e aggregateErr) OutcomeUnknown() bool { return e.unknown }
