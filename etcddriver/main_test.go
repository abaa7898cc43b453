package etcddriver_test

import (
	"context"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"go.uber.org/goleak"
)

var errNotHeld = driver.ErrNotHeld

// driverRequest returns a request for key by tok with ttl.
func driverRequest(key, tok string, ttl time.Duration) driver.Request {
	return driver.Request{Key: key, Token: tok, TTL: ttl, Owner: "etcddriver-test"}
}

// TestMain stops the shared toxiproxy server (internal/redistest) before
// goleak looks for goroutines left over.
func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }

// testCtx returns a context that ends with the test, bounded so that a
// hang fails the test instead of the whole binary.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// soleHolder returns the one holder of a lock that Locker.Holders
// reported, and whether there is one.
func soleHolder(hs []dlock.Holder, err error) (dlock.Holder, bool, error) {
	if err != nil || len(hs) == 0 {
		return dlock.Holder{}, false, err
	}
	return hs[0], true, nil
}
