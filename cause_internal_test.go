package dlock

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// grantAll grants every request and confirms every refresh and release.
type grantAll struct{}

func (grantAll) Acquire(context.Context, driver.Request) (driver.Result, error) {
	return driver.Result{Acquired: true, Fence: 1}, nil
}
func (grantAll) Refresh(context.Context, string, string, time.Duration) error { return nil }
func (grantAll) Release(context.Context, string, string) error                { return nil }
func (grantAll) Close() error                                                 { return nil }

// TestCauseAtFirstLook: once the local deadline has passed, and before the
// renewal goroutine runs (here: its timer is set for later, as after a
// pause of the process), context.Cause of the lease's context and of Do's
// context, looked at first, reports the loss, as their Err does.
func TestCauseAtFirstLook(t *testing.T) {
	for _, via := range []string{"lease", "Do"} {
		t.Run(via, func(t *testing.T) {
			l := New(grantAll{}, &Options{LeaseOptions: LeaseOptions{TTL: time.Hour}})
			defer l.Close()
			l.Do(t.Context(), "k", nil, func(ctx context.Context, lease *Lease) error {
				if via == "lease" {
					ctx = lease.Context()
				}
				r := l.renew
				r.mu.Lock() // the deadline passes unseen by the loop
				r.setDeadline(lease, time.Now().Add(-time.Millisecond))
				r.mu.Unlock()
				if cause := context.Cause(ctx); !errors.Is(cause, ErrLeaseLost) {
					t.Errorf("context.Cause at the first look after the deadline = %v; want ErrLeaseLost", cause)
				}
				return nil
			})
		})
	}
}
