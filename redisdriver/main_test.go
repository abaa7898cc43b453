package redisdriver_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }

// testCtx returns a context that ends with the test, bounded so that a
// hang fails the test instead of the whole binary.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dialVia returns a go-redis Dialer that reaches the addresses in proxies
// through them, and any other address directly.
func dialVia(proxies map[string]*redistest.Proxy) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if p := proxies[addr]; p != nil {
			addr = p.Addr()
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

// soleHolder returns the one holder of a lock that Locker.Holders
// reported, and whether there is one.
func soleHolder(hs []dlock.Holder, err error) (dlock.Holder, bool, error) {
	if err != nil || len(hs) == 0 {
		return dlock.Holder{}, false, err
	}
	return hs[0], true, nil
}
