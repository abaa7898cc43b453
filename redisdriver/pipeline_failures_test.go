package redisdriver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// faultHook is a user's go-redis hook that, for the round trips carrying
// a command that contains marker, returns errRefusedByHook without
// sending them, or panics when panics is set: an OTel-like or
// circuit-breaking hook of the user's.
type faultHook struct {
	marker string
	panics bool
}

var errRefusedByHook = errors.New("refused by the user's hook")

func (h faultHook) hit(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if strings.Contains(fmt.Sprint(c.Args()), h.marker) {
			return true
		}
	}
	return false
}

func (h faultHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h faultHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.hit([]redis.Cmder{cmd}) {
			if h.panics {
				panic("hook panic: " + h.marker)
			}
			return errRefusedByHook
		}
		return next(ctx, cmd)
	}
}

func (h faultHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.hit(cmds) {
			if h.panics {
				panic("hook panic: " + h.marker)
			}
			return errRefusedByHook
		}
		return next(ctx, cmds)
	}
}

// hookedDriver returns a driver on the shared server whose client has
// rt's hook, then h; and a channel that receives once each time a call
// joins the batcher's queue.
func hookedDriver(t *testing.T, h faultHook) (driver.Locker, *roundTrips, <-chan struct{}) {
	t.Helper()
	c := redistest.Shared(t).Client(t)
	rt := &roundTrips{}
	c.AddHook(rt)
	c.AddHook(h)
	d := redisdriver.NewDriver(c, nil)
	t.Cleanup(func() { d.Close() })
	queued := make(chan struct{}, 1024)
	redisdriver.SetQueuedHookForTest(d, func() { queued <- struct{}{} })
	return d, rt, queued
}

// TestPipelineHookErrorFailsBatchedCalls: when the user's pipeline hook
// refuses a batch (returns an error without sending it), every call of
// the batch fails, as a lone call refused by the process hook does. A
// pipeline refused by its hook leaves its commands without reply nor
// error: read as they were, a bare SET NX reported the key acquired
// though nothing was sent.
func TestPipelineHookErrorFailsBatchedCalls(t *testing.T) {
	base := uniqueKey("pipe/hookerr/")
	d, rt, queued := hookedDriver(t, faultHook{marker: base + "/refused"})
	ctx := testCtx(t)
	release := occupy(t, d, rt, base)

	reqs := []driver.Request{
		{Key: base + "/refused/bare", Token: "t", TTL: 10 * time.Second, NoFence: true},
		req(base+"/refused/fenced", "t"),
	}
	type outcome struct {
		res driver.Result
		err error
	}
	out := make([]outcome, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() {
			res, err := d.Acquire(ctx, r)
			out[i] = outcome{res, err}
		})
	}
	waitQueued(t, queued, len(reqs))
	release()
	wg.Wait()
	admin := redistest.Shared(t).Client(t)
	for i, r := range reqs {
		if out[i].err == nil || out[i].res.Acquired {
			t.Errorf("Acquire %s in a batch its hook refused = %+v, %v; want an error", r.Key, out[i].res, out[i].err)
		} else if !errors.Is(out[i].err, errRefusedByHook) {
			t.Errorf("Acquire %s in a batch its hook refused: %v, want the hook's error", r.Key, out[i].err)
		}
		if n := admin.Exists(ctx, "dlock:{"+r.Key+"}").Val(); n != 0 {
			t.Errorf("the lock of %s, refused by the hook, exists", r.Key)
		}
	}
}

// inspectRecovering runs Inspect of key and returns what it panicked
// with, if it did.
func inspectRecovering(ctx context.Context, d driver.Locker, key string) (p any, err error) {
	defer func() { p = recover() }()
	_, _, err = d.(driver.Inspector).Inspect(ctx, key)
	return nil, err
}

// TestPipelineHookPanicFreesLane: a user's hook that panics on a call
// sent directly panics in the caller, as client.Do would, and the
// caller that recovers leaves the driver as it was. The lane the call
// took was never given back: after as many recovered panics as lanes,
// every call queued behind lanes that no sender would ever serve, until
// its context ended.
func TestPipelineHookPanicFreesLane(t *testing.T) {
	base := uniqueKey("pipe/hookpanic/")
	d, _, _ := hookedDriver(t, faultHook{marker: base + "/boom", panics: true})
	ctx := testCtx(t)
	for i := range redisdriver.MaxInFlightForTest + 1 {
		if p, _ := inspectRecovering(ctx, d, fmt.Sprintf("%s/boom/%d", base, i)); p == nil {
			t.Fatalf("Inspect whose hook panics did not panic in its caller")
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, _, err := d.(driver.Inspector).Inspect(cctx, base+"/fine"); err != nil {
		t.Fatalf("Inspect after the hook's panics were recovered: %v", err)
	}
}

// TestPipelineHookPanicInBatch: a user's hook that panics on a batch
// panics in each caller of the batch, who can recover it, not in the
// sender goroutine, where it ended the program; the driver then works
// on.
func TestPipelineHookPanicInBatch(t *testing.T) {
	base := uniqueKey("pipe/batchpanic/")
	d, rt, queued := hookedDriver(t, faultHook{marker: base + "/boom", panics: true})
	ctx := testCtx(t)
	release := occupy(t, d, rt, base)
	keys := []string{base + "/boom/a", base + "/b"}
	panics := make([]any, len(keys))
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() { panics[i], _ = inspectRecovering(ctx, d, k) })
	}
	waitQueued(t, queued, len(keys))
	release()
	wg.Wait()
	for i, p := range panics {
		if p == nil {
			t.Errorf("Inspect %s in a batch whose hook panicked did not panic", keys[i])
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for i := range 2 * redisdriver.MaxInFlightForTest {
		if _, _, err := d.(driver.Inspector).Inspect(cctx, fmt.Sprintf("%s/fine/%d", base, i)); err != nil {
			t.Fatalf("Inspect after a batch's hook panicked: %v", err)
		}
	}
}

// sentConn signals on sent after each write that carries marker: the
// bytes left for the server.
type sentConn struct {
	net.Conn
	marker string
	sent   chan<- struct{}
}

func (c sentConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err == nil && strings.Contains(string(b), c.marker) {
		c.sent <- struct{}{}
	}
	return n, err
}

// TestPipelineBatchBrokenMidFlight: when the connection of a batch
// breaks after the batch was sent (the proxy closes it while the replies
// are delayed), every call of the batch reports an unknown outcome: the
// scripts may have run. Never ErrUnavailable (which lets the root retry
// as if nothing happened), never a success. The client keeps go-redis's
// default retries, as a user's client given to New does: the retry of
// the pipeline then fails to dial.
func TestPipelineBatchBrokenMidFlight(t *testing.T) {
	for _, retries := range []int{-1, 3} {
		t.Run(fmt.Sprintf("MaxRetries=%d", retries), func(t *testing.T) {
			s := redistest.Shared(t)
			px := redistest.NewProxy(t, s.Addr())
			o := s.Options()
			o.Addr = px.Addr()
			o.MaxRetries = retries
			base := uniqueKey("pipe/broken/")
			sent := make(chan struct{}, 64)
			o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
				var nd net.Dialer
				conn, err := nd.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return sentConn{conn, base + "/x", sent}, nil
			}
			c := redis.NewClient(o)
			t.Cleanup(func() { c.Close() })
			rt := &roundTrips{}
			c.AddHook(rt)
			d := redisdriver.NewDriver(c, nil)
			t.Cleanup(func() { d.Close() })
			queued := make(chan struct{}, 1024)
			redisdriver.SetQueuedHookForTest(d, func() { queued <- struct{}{} })
			ctx := testCtx(t)
			warm := base + "/warm"
			if _, err := d.Acquire(ctx, req(warm, "w")); err != nil {
				t.Fatal(err)
			}

			release := occupy(t, d, rt, base)
			const n = 3
			errs := make([]error, n)
			results := make([]driver.Result, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					results[i], errs[i] = d.Acquire(ctx, req(fmt.Sprintf("%s/x/%d", base, i), "t"))
				})
			}
			waitQueued(t, queued, n)
			px.Latency(time.Second)
			release()
			select {
			case <-sent:
			case <-time.After(10 * time.Second):
				t.Fatal("the batch was never sent")
			}
			px.Disconnect()
			wg.Wait()
			batched := false
			for _, trip := range rt.since(0) {
				batched = batched || len(trip) == n && strings.Contains(strings.Join(trip, " "), base+"/x/")
			}
			if !batched {
				t.Fatalf("the %d acquires did not leave as one batch", n)
			}
			for i, err := range errs {
				if err == nil || !driver.OutcomeUnknown(err) || errors.Is(err, driver.ErrUnavailable) {
					t.Errorf("acquire %d of a batch whose connection broke in flight = %+v, %v; want an unknown outcome", i, results[i], err)
				}
			}
		})
	}
}

// TestPipelineNoScriptInBatch: when the server lost its scripts (SCRIPT
// FLUSH) and a batch of releases meets NOSCRIPT, each release goes again
// by EVAL, once, and releases its lock: one NOSCRIPT neither fails the
// batch nor runs a release twice.
func TestPipelineNoScriptInBatch(t *testing.T) {
	d, rt, queued := pipelineDriver(t)
	ctx := testCtx(t)
	base := uniqueKey("pipe/noscript/")
	const n = 3
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s/k/%d", base, i)
		if _, err := d.Acquire(ctx, req(keys[i], "t")); err != nil {
			t.Fatal(err)
		}
	}
	admin := redistest.Shared(t).Client(t)
	if err := admin.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	release := occupy(t, d, rt, base)
	before := rt.count()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() { errs[i] = d.Release(ctx, k, "t") })
	}
	waitQueued(t, queued, n)
	release()
	wg.Wait()
	batched := false
	counts := map[string]int{} // "evalsha key" or "eval key": times sent
	for _, trip := range rt.since(before) {
		// The releases share their round trip, perhaps with a gate
		// call's own retry after NOSCRIPT, which may join the batch.
		releases := 0
		for _, cmd := range trip {
			if strings.HasPrefix(cmd, "[evalsha ") && strings.Contains(cmd, base+"/k/") {
				releases++
			}
		}
		batched = batched || releases == n
		for _, cmd := range trip {
			for _, k := range keys {
				if strings.Contains(cmd, "{"+k+"}") {
					verb, _, _ := strings.Cut(strings.TrimPrefix(cmd, "["), " ")
					counts[verb+" "+k]++
				}
			}
		}
	}
	if !batched {
		t.Fatalf("the %d releases did not leave as one batch: round trips %q", n, rt.since(before))
	}
	for i, k := range keys {
		if errs[i] != nil {
			t.Errorf("Release %s in a batch that met NOSCRIPT: %v", k, errs[i])
		}
		if counts["evalsha "+k] != 1 || counts["eval "+k] != 1 {
			t.Errorf("release of %s sent as EVALSHA %d times and EVAL %d times, want once each", k, counts["evalsha "+k], counts["eval "+k])
		}
		if admin.Exists(ctx, "dlock:{"+k+"}").Val() != 0 {
			t.Errorf("lock %s still exists after its release", k)
		}
	}
}

// pauseHook pauses the server's writes (CLIENT PAUSE WRITE: scripts
// wait, CLIENT UNPAUSE does not) just before a pipeline carrying marker
// is written, and signals on paused: the batch is then written and left
// unanswered.
type pauseHook struct {
	marker string
	admin  *redis.Client
	paused chan<- error
}

func (h pauseHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h pauseHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h pauseHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if (faultHook{marker: h.marker}).hit(cmds) {
			h.paused <- h.admin.Do(context.Background(), "CLIENT", "PAUSE", 10000, "WRITE").Err()
		}
		return next(ctx, cmds)
	}
}

// TestPipelineErrorsPerCall: a command that fails in a batch fails alone;
// the others of the batch get their own replies.
func TestPipelineErrorsPerCall(t *testing.T) {
	d, rt, queued := pipelineDriver(t)
	ctx := testCtx(t)
	base := uniqueKey("pipe/errs/")
	release := occupy(t, d, rt, base)
	str, num := base+"/str", base+"/num"
	admin := redistest.Shared(t).Client(t)
	if err := admin.Set(ctx, str, "not a number", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	before := rt.count()
	type result struct {
		name string
		cmd  *redis.Cmd
	}
	results := make(chan result, 3)
	run := func(name string, args ...any) {
		go func() { results <- result{name, redisdriver.PipelineDoForTest(ctx, d, args...)} }()
		waitQueued(t, queued, 1)
	}
	run("incr of a string", "INCR", str)
	run("set", "SET", num, "41", "PX", 60000)
	run("get", "GET", str)
	release()
	got := map[string]*redis.Cmd{}
	for range 3 {
		r := <-results
		got[r.name] = r.cmd
	}
	if err := got["incr of a string"].Err(); err == nil || !strings.Contains(err.Error(), "not an integer") {
		t.Errorf("INCR of a string in a batch: %v, want the server's 'not an integer' error", err)
	}
	if v, err := got["set"].Text(); err != nil || v != "OK" {
		t.Errorf("SET in the batch with a failing command: %q, %v; want OK", v, err)
	}
	if v, err := got["get"].Text(); err != nil || v != "not a number" {
		t.Errorf("GET in the batch with a failing command: %q, %v; want its value", v, err)
	}
	trips := rt.since(before)
	if len(trips) != 1 || len(trips[0]) != 3 {
		t.Fatalf("the 3 queued commands went out as %v, want one pipeline of 3", trips)
	}
}
