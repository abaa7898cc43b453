package redisdriver

import (
	"errors"
	"net"
	"syscall"
	"testing"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redisdriver/internal/autopipe"
	"github.com/redis/go-redis/v9"
)

// TestDialErrorSurelyUnsentOnlyAfterOneAttempt: a dial error or a pool
// timeout means "surely not applied" (ErrUnavailable) only for a command
// sent as one attempt; bare, it may end a go-redis retry whose earlier
// attempt was written and run, and the outcome is unknown.
func TestDialErrorSurelyUnsentOnlyAfterOneAttempt(t *testing.T) {
	d := newLocker(redis.NewClient(&redis.Options{}), nil, true)
	t.Cleanup(func() { d.Close() })
	for _, err := range []error{
		&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED},
		redis.ErrPoolTimeout,
	} {
		if got := d.wrap("acquire", "k", err); errors.Is(got, driver.ErrUnavailable) || !driver.OutcomeUnknown(got) {
			t.Errorf("bare %v: %v; want an unknown outcome", err, got)
		}
		if got := d.wrap("acquire", "k", &autopipe.UnsentError{Err: err}); !errors.Is(got, driver.ErrUnavailable) || driver.OutcomeUnknown(got) {
			t.Errorf("%v of one attempt: %v; want ErrUnavailable", err, got)
		}
	}
}
