package redisurl

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// defaultDialTimeout is go-redis's DialTimeout when none is given.
const defaultDialTimeout = 5 * time.Second

// NotTLSError reports a TLS handshake that got no TLS answer: the server
// stayed silent for the dial timeout (a plaintext Redis waits for the end
// of a command line that a ClientHello does not send) or answered with
// something that is not TLS. It wraps [driver.ErrUnavailable]: no
// connection was made, so no command ran.
type NotTLSError struct {
	Addr  string
	Cause string // the handshake's error, as text: its timeout is not the caller's
}

func (e *NotTLSError) Error() string {
	return fmt.Sprintf("%s: TLS handshake failed: is the server speaking TLS on this port? (%s)", e.Addr, e.Cause)
}

// Unwrap returns [driver.ErrUnavailable].
func (e *NotTLSError) Unwrap() error { return driver.ErrUnavailable }

// tlsDialer returns a go-redis Dialer that makes TLS connections with conf
// and bounds the TCP dial and the handshake together by timeout (≤ 0: no
// bound but ctx). go-redis's own TLS dialer ignores ctx during the
// handshake and reports a server that is not speaking TLS as a timeout,
// which go-redis retries: a rediss:// URL pointed at a plaintext port
// hung for 25 s and ended with "context deadline exceeded".
//
// A handshake that timed out or read a record that is not TLS is a
// [NotTLSError]; other handshake errors (a certificate that does not
// verify, an alert) are returned as they are.
func tlsDialer(conf *tls.Config, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		outer := ctx
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		var d net.Dialer
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := conf
		if c.ServerName == "" {
			// tls.Dial takes the name from the address; tls.Client does not.
			c = conf.Clone()
			c.ServerName = hostname(addr)
		}
		tc := tls.Client(raw, c)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			// go-redis dials on a context of its own, ended by its
			// DialTimeout or cancelled when no caller wants the
			// connection any more: only a cancellation is not the
			// server's doing.
			if !errors.Is(outer.Err(), context.Canceled) && notTLS(err) {
				return nil, &NotTLSError{Addr: addr, Cause: err.Error()}
			}
			return nil, err
		}
		return tc, nil
	}
}

// notTLS reports a handshake error that says the peer does not speak TLS:
// a record that is not TLS, or no answer in time.
func notTLS(err error) bool {
	var rh tls.RecordHeaderError
	var t interface{ Timeout() bool }
	return errors.As(err, &rh) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &t) && t.Timeout()
}

// dialTimeout is the DialTimeout go-redis will use for a configured d.
func dialTimeout(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return defaultDialTimeout
	case d < 0:
		return 0
	}
	return d
}
