package redisdriver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// breakingDialer dials the server and, once armed, counts the writes
// that carry marker; the first such write goes through to the server,
// then its connection breaks (reads return EOF): the command ran, its
// reply is lost. While refuse is set, dials fail as a server that went
// away.
type breakingDialer struct {
	marker string
	armed  atomic.Bool
	writes atomic.Int32 // writes that carried marker once armed
	broken atomic.Bool  // a connection was broken
	refuse atomic.Bool  // dials are refused
}

func (b *breakingDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if b.refuse.Load() {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &breakingConn{Conn: conn, d: b}, nil
}

type breakingConn struct {
	net.Conn
	d      *breakingDialer
	broken atomic.Bool
}

func (c *breakingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err == nil && c.d.armed.Load() && strings.Contains(string(p), c.d.marker) {
		c.d.writes.Add(1)
		if !c.d.broken.Swap(true) {
			c.broken.Store(true)
		}
	}
	return n, err
}

// Read drops the reply of the marked write: it reads it, so that the
// command surely ran, then closes the connection and reports EOF.
func (c *breakingConn) Read(p []byte) (int, error) {
	if c.broken.Load() {
		c.Conn.Read(p)
		c.Conn.Close()
		return 0, io.EOF
	}
	return c.Conn.Read(p)
}

// breakingDriver returns a driver over a client with go-redis's default
// retries (MaxRetries 3), as a user's client given to New has, whose
// connections break as b says; and the round trips it makes.
func breakingDriver(t *testing.T, b *breakingDialer) (driver.Locker, *roundTrips, <-chan struct{}) {
	t.Helper()
	o := redistest.Shared(t).Options()
	o.MaxRetries = 0 // go-redis's default: 3
	o.Dialer = b.dial
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	rt := &roundTrips{}
	c.AddHook(rt)
	d := redisdriver.NewDriver(c, nil)
	t.Cleanup(func() { d.Close() })
	queued := make(chan struct{}, 1024)
	redisdriver.SetQueuedHookForTest(d, func() { queued <- struct{}{} })
	return d, rt, queued
}

// TestReleaseNotResentAfterBrokenConnection: a release that the server
// ran, whose connection then broke before the reply, is sent once: alone
// or in a batch. go-redis retries a command or pipeline after EOF by
// default; the release sent again finds the key free and is answered
// "not held", so the holder would be told its lease was lost when it was
// released, and a batch sent again after its callers left (its context is
// detached from theirs) would take keys again for nobody. The outcome is
// unknown, never ErrNotHeld.
func TestReleaseNotResentAfterBrokenConnection(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprintf("batched=%v", batched), func(t *testing.T) {
			base := uniqueKey("resend/")
			b := &breakingDialer{marker: base + "/x/"}
			d, rt, queued := breakingDriver(t, b)
			ctx := testCtx(t)
			n := 1
			if batched {
				n = 3
			}
			keys := make([]string, n)
			for i := range keys {
				keys[i] = fmt.Sprintf("%s/x/%d", base, i)
				if _, err := d.Acquire(ctx, req(keys[i], "t")); err != nil {
					t.Fatal(err)
				}
			}
			// Load the release script: a NOSCRIPT reply dropped would be
			// a release that did not run.
			if _, err := d.Acquire(ctx, req(base+"/warm", "t")); err != nil {
				t.Fatal(err)
			}
			if err := d.Release(ctx, base+"/warm", "t"); err != nil {
				t.Fatal(err)
			}
			b.armed.Store(true)
			var release func()
			if batched {
				release = occupy(t, d, rt, base)
			}
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i, k := range keys {
				wg.Go(func() { errs[i] = d.Release(ctx, k, "t") })
			}
			if batched {
				waitQueued(t, queued, n)
				release()
			}
			wg.Wait()
			if batched {
				found := false
				for _, trip := range rt.since(0) {
					found = found || len(trip) == n && strings.Contains(strings.Join(trip, " "), b.marker)
				}
				if !found {
					t.Fatalf("the %d releases did not leave as one batch", n)
				}
			}
			if w := b.writes.Load(); w != 1 {
				t.Errorf("the releases were written %d times, want once", w)
			}
			admin := redistest.Shared(t).Client(t)
			for i, k := range keys {
				if errors.Is(errs[i], driver.ErrNotHeld) || !driver.OutcomeUnknown(errs[i]) {
					t.Errorf("release %d, run by the server, reply lost: %v; want an unknown outcome, not ErrNotHeld", i, errs[i])
				}
				if admin.Exists(ctx, "dlock:{"+k+"}").Val() != 0 {
					t.Errorf("lock %s still held after its release ran", k)
				}
			}
		})
	}
}

// TestAcquireDialErrorAfterWriteIsUnknown: an acquire that the server ran,
// whose connection then broke, while the server can no longer be dialed,
// has an unknown outcome: the key may be held by its token, which the
// root must undo. With go-redis's retries, the last error is the retry's
// dial error, which said "surely not applied" (ErrUnavailable), and the
// root left the key held for its TTL.
func TestAcquireDialErrorAfterWriteIsUnknown(t *testing.T) {
	base := uniqueKey("dialafter/")
	b := &breakingDialer{marker: base + "/x"}
	d, _, _ := breakingDriver(t, b)
	ctx := testCtx(t)
	// A connection of the pool, dialed before the refusals start, and
	// the acquire script loaded.
	if _, err := d.Acquire(ctx, req(base+"/warm", "t")); err != nil {
		t.Fatal(err)
	}
	b.armed.Store(true)
	b.refuse.Store(true)
	res, err := d.Acquire(ctx, req(base+"/x", "t"))
	if b.writes.Load() == 0 {
		t.Fatal("the acquire was never written")
	}
	if err == nil || errors.Is(err, driver.ErrUnavailable) || !driver.OutcomeUnknown(err) {
		t.Errorf("acquire run by the server, connection broken, server no longer dialable: %+v, %v; want an unknown outcome, not ErrUnavailable", res, err)
	}
}
