package redisdriver_test

import (
	"context"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// TestCancelledTryAcquireLeavesNoKeyHeld: many goroutines share one
// Locker and call TryAcquire on fresh keys with contexts that end 1–5 ms
// into the call, so that many contexts end while the acquire is queued,
// batched, written or answered. The root undoes every attempt whose
// outcome is unknown; that undo must act after the acquire it undoes, on
// whichever lane or batch each goes out, directly on loopback or through
// a TCP proxy that delays the replies. After the run, with every lease
// handed out released, no lock key may be left held: a key left held is
// held by nobody for its whole TTL.
func TestCancelledTryAcquireLeavesNoKeyHeld(t *testing.T) {
	for _, mode := range []struct {
		name    string
		lanes   int           // 0: the driver's own; AllDirectForTest: every call direct
		latency time.Duration // of the replies, through a TCP proxy
	}{
		{"batched", 0, 0},
		{"direct", redisdriver.AllDirectForTest, 0},
		{"batched/proxy", 0, 2 * time.Millisecond},
		{"direct/proxy", redisdriver.AllDirectForTest, 2 * time.Millisecond},
	} {
		t.Run(mode.name, func(t *testing.T) {
			s := redistest.Shared(t)
			c := s.Client(t)
			if mode.latency > 0 {
				px := redistest.NewProxy(t, s.Addr())
				px.Latency(mode.latency)
				o := s.Options()
				o.Addr = px.Addr()
				c = redis.NewClient(o)
				t.Cleanup(func() { c.Close() })
			}
			prefix := "abandon" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
			d := redisdriver.NewDriver(c, &redisdriver.Options{Prefix: prefix})
			if mode.lanes > 0 {
				redisdriver.SetLanesForTest(d, mode.lanes, false)
			}
			l := dlock.New(d, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}})
			t.Cleanup(func() { l.Close() })
			ctx := testCtx(t)

			const goroutines = 64
			stop := time.Now().Add(2 * time.Second)
			var next, ended, acquired atomic.Int64
			var wg sync.WaitGroup
			for range goroutines {
				wg.Go(func() {
					for time.Now().Before(stop) {
						key := "k" + strconv.FormatInt(next.Add(1), 10)
						cctx, cancel := context.WithTimeout(ctx, time.Millisecond+rand.N(4*time.Millisecond))
						lease, err := l.TryAcquire(cctx, key, nil)
						if cctx.Err() != nil {
							ended.Add(1)
						}
						cancel()
						if err == nil {
							acquired.Add(1)
							if rerr := lease.Release(ctx); rerr != nil {
								t.Errorf("release of a lease handed out: %v", rerr)
							}
						}
					}
				})
			}
			wg.Wait()

			held := heldLockKeys(t, ctx, s.Client(t), prefix)
			t.Logf("%d attempts, %d acquired, %d contexts ended; %d lock keys left held", next.Load(), acquired.Load(), ended.Load(), len(held))
			if ended.Load() == 0 {
				t.Fatal("no context ended during a call: the test checks nothing")
			}
			if len(held) > 0 {
				t.Errorf("%d lock keys left held by no lease after every lease was released (e.g. %v)", len(held), held[:min(len(held), 5)])
			}
		})
	}
}

// TestUndoWaitsForLeftBatch: a caller whose context ends while its
// acquire is in a batch in flight returns at once; the release that undoes
// it, sent next, goes out only after the batch is answered, so it
// releases the key the acquire took instead of finding it free and
// letting the acquire take it for nobody. (The batch is held before it is
// written, as a slow connection or a busy sender would hold it.)
func TestUndoWaitsForLeftBatch(t *testing.T) {
	d, rt, queued := pipelineDriver(t)
	ctx := testCtx(t)
	base := uniqueKey("pipe/undo/")
	release := occupy(t, d, rt, base)
	left := base + "/left"
	batchHeld, batchRelease := rt.holdAll(left)
	defer batchRelease()
	cctx, cancel := context.WithCancel(ctx)
	leftErr := make(chan error, 1)
	go func() {
		_, err := d.Acquire(cctx, req(left, "t"))
		leftErr <- err
	}()
	waitQueued(t, queued, 1)
	other := make(chan error, 1)
	go func() {
		_, err := d.Acquire(ctx, req(base+"/other", "t"))
		other <- err
	}()
	waitQueued(t, queued, 1)
	release()
	<-batchHeld
	cancel()
	if err := <-leftErr; !driver.OutcomeUnknown(err) {
		t.Fatalf("Acquire whose context ended with its batch in flight = %v, want an unknown outcome", err)
	}
	undone := make(chan error, 1)
	go func() { undone <- d.Release(ctx, left, "t") }()
	select {
	case err := <-undone:
		t.Fatalf("the undo returned (%v) while the acquire it undoes was still in flight", err)
	default:
	}
	batchRelease()
	if err := <-other; err != nil {
		t.Fatalf("the other call of the batch: %v", err)
	}
	if err := <-undone; err != nil {
		t.Errorf("the undo of an acquire that ran: %v, want it to release the key", err)
	}
	admin := redistest.Shared(t).Client(t)
	if n := admin.Exists(ctx, "dlock:{"+left+"}").Val(); n != 0 {
		t.Errorf("the key of an undone acquire is held")
	}
}

// heldLockKeys returns the lock keys under prefix that exist: PREFIX{KEY}
// alone, not the fence, queue and other keys beside it.
func heldLockKeys(t *testing.T, ctx context.Context, c *redis.Client, prefix string) []string {
	t.Helper()
	var held []string
	it := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for it.Next(ctx) {
		if k := it.Val(); strings.HasSuffix(k, "}") {
			held = append(held, k)
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return held
}

// delayingDialer dials the server; the first write that carries marker
// reaches it only after delay, as a slow network path would deliver it,
// while the writer is told at once that it was written. Later writes on
// the same connection follow it; the connection closes once it is
// delivered. forwarded is closed when it was.
type delayingDialer struct {
	marker    string
	delay     time.Duration
	once      atomic.Bool
	forwarded chan struct{}
}

func (d *delayingDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &delayingConn{Conn: conn, d: d}, nil
}

type delayingConn struct {
	net.Conn
	d        *delayingDialer
	inFlight sync.WaitGroup
}

func (c *delayingConn) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.d.marker) && c.d.once.CompareAndSwap(false, true) {
		buf := slices.Clone(p)
		c.inFlight.Go(func() {
			time.Sleep(c.d.delay)
			// Written before any deadline the writer set since: the
			// bytes are on their way, and no deadline stops them.
			c.Conn.SetWriteDeadline(time.Time{})
			c.Conn.Write(buf)
			close(c.d.forwarded)
		})
		return len(p), nil
	}
	c.inFlight.Wait()
	return c.Conn.Write(p)
}

// Close returns at once; the connection closes once the delayed write
// is delivered, as a socket closed with data in flight delivers it.
func (c *delayingConn) Close() error {
	go func() {
		c.inFlight.Wait()
		c.Conn.Close()
	}()
	return nil
}

// TestLoneAcquireCutByDeadlineUndoneAfter: a lone TryAcquire whose
// context ends while its acquire is on its way to the server (written,
// delayed by the network) returns with its context's error; the root's
// undo, sent on another connection, must not overtake the acquire: the
// key is free once the acquire has landed. Sent on the caller's goroutine
// and context, the acquire's connection was closed at the deadline, the
// undo found the key free, and the acquire then took it for nobody.
func TestLoneAcquireCutByDeadlineUndoneAfter(t *testing.T) {
	s := redistest.Shared(t)
	base := uniqueKey("lonecut/")
	dd := &delayingDialer{marker: base + "/x}", delay: 200 * time.Millisecond, forwarded: make(chan struct{})}
	o := s.Options()
	o.Dialer = dd.dial
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	l := dlock.New(redisdriver.NewDriver(c, nil), &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}})
	t.Cleanup(func() { l.Close() })
	ctx := testCtx(t)
	// The scripts loaded: a NOSCRIPT reply would be an acquire that did
	// not run.
	warm, err := l.TryAcquire(ctx, base+"/warm", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := warm.Release(ctx); err != nil {
		t.Fatal(err)
	}

	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if lease, err := l.TryAcquire(cctx, base+"/x", nil); err == nil {
		lease.Release(ctx)
		t.Fatal("TryAcquire succeeded although its acquire reached the server after its deadline")
	}
	select {
	case <-dd.forwarded:
	case <-time.After(10 * time.Second):
		t.Fatal("the acquire never reached the server")
	}
	// The acquire is in the server's socket buffer: it runs at the
	// server's next turn. Look for its grant for a while.
	admin := s.Client(t)
	for range 20 {
		if n := admin.Exists(ctx, "dlock:{"+base+"/x}").Val(); n != 0 {
			t.Fatal("the key is held by the acquire the root undid: its undo ran first")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
