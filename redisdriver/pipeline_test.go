package redisdriver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// roundTrips is a go-redis hook that records each round trip the driver
// makes, a lone command or a pipeline, with the commands it carried; and
// can hold the round trips that carry a given string (a key) until told.
type roundTrips struct {
	mu    sync.Mutex
	trips [][]string // each round trip's commands, as text
	gids  []string   // the goroutine that made each round trip
	holds []*hold
}

// goroutineID returns the id of the calling goroutine, from its stack
// trace: a test-only way to tell where a command was sent from.
func goroutineID() string {
	var buf [64]byte
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf[:runtime.Stack(buf[:], false)]), "goroutine "), " ")
	return id
}

// hold holds the round trips with a command containing s.
type hold struct {
	s    string
	held chan struct{} // receives when a round trip starts waiting
	free chan struct{} // closed to let them go
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.record(ctx, []redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.record(ctx, cmds)
		return next(ctx, cmds)
	}
}

func (r *roundTrips) record(ctx context.Context, cmds []redis.Cmder) {
	trip := make([]string, len(cmds))
	for i, c := range cmds {
		trip[i] = fmt.Sprint(c.Args())
	}
	r.mu.Lock()
	r.trips = append(r.trips, trip)
	r.gids = append(r.gids, goroutineID())
	var h *hold
	for _, x := range r.holds {
		if strings.Contains(strings.Join(trip, " "), x.s) {
			h = x
		}
	}
	r.mu.Unlock()
	if h != nil {
		h.held <- struct{}{}
		select {
		case <-h.free:
		case <-ctx.Done():
		}
	}
}

// holdAll makes the round trips that carry s wait until the returned
// function is called; held receives as each starts waiting.
func (r *roundTrips) holdAll(s string) (held <-chan struct{}, release func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := &hold{s, make(chan struct{}, 64), make(chan struct{})}
	r.holds = append(r.holds, h)
	return h.held, sync.OnceFunc(func() { close(h.free) })
}

// occupy starts as many inspections of keys under base as the driver
// sends at once, holds them, and returns when all are in flight: calls
// made then queue for the next batch until release is called. It starts
// each once the one before is held, so that each is a round trip of its
// own (started together, they would leave in fewer).
func occupy(t *testing.T, d driver.Locker, rt *roundTrips, base string) (release func()) {
	t.Helper()
	held, release := rt.holdAll(base + "/gate")
	t.Cleanup(release)
	ctx := testCtx(t)
	for i := range redisdriver.MaxInFlightForTest {
		go d.(driver.Inspector).Inspect(ctx, fmt.Sprintf("%s/gate/%d", base, i))
		<-held
	}
	return release
}

// since returns the driver's round trips recorded from the nth on,
// without those of go-redis's connection handshake (HELLO, CLIENT
// SETINFO), made when a pool dials.
func (r *roundTrips) since(n int) [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var trips [][]string
	for _, trip := range r.trips[n:] {
		if !strings.HasPrefix(trip[0], "[hello ") && !strings.HasPrefix(trip[0], "[client ") {
			trips = append(trips, trip)
		}
	}
	return trips
}

func (r *roundTrips) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.trips)
}

// pipelineDriver returns a driver on the shared server whose round trips
// rt records, with its scripts loaded, and a channel that receives once
// each time a call joins the batcher's queue.
func pipelineDriver(t *testing.T) (driver.Locker, *roundTrips, <-chan struct{}) {
	t.Helper()
	s := redistest.Shared(t)
	c := s.Client(t)
	rt := &roundTrips{}
	c.AddHook(rt)
	d := redisdriver.NewDriver(c, nil)
	t.Cleanup(func() { d.Close() })
	queued := make(chan struct{}, 1024)
	redisdriver.SetQueuedHookForTest(d, func() { queued <- struct{}{} })
	// Load every script, so that no EVALSHA of the test meets NOSCRIPT.
	ctx := testCtx(t)
	key := uniqueKey("pipe/warm/")
	r := req(key, "warm")
	if _, err := d.Acquire(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.(driver.Inspector).Inspect(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := d.Refresh(ctx, key, "warm", time.Second); err != nil {
		t.Fatal(err)
	}
	if err := d.Release(ctx, key, "warm"); err != nil {
		t.Fatal(err)
	}
	return d, rt, queued
}

// waitQueued waits until n calls joined the queue.
func waitQueued(t *testing.T, queued <-chan struct{}, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for range n {
		select {
		case <-queued:
		case <-timeout:
			t.Fatalf("fewer than %d calls queued behind the calls in flight", n)
		}
	}
}

// TestPipelineBatchesConcurrentCalls: calls that arrive while the driver
// has as many calls in flight as it sends at once (acquires, refreshes,
// releases, inspections, on different keys) leave together, as one
// pipeline: one round trip for all of them.
func TestPipelineBatchesConcurrentCalls(t *testing.T) {
	d, rt, queued := pipelineDriver(t)
	ctx := testCtx(t)
	base := uniqueKey("pipe/batch/")
	release := occupy(t, d, rt, base)
	// Keys 0..n-1: acquired in the batch; key "mine", free, is
	// refreshed, released and inspected in the same batch.
	const n = 8
	mine := base + "/mine"
	before := rt.count()
	var wg sync.WaitGroup
	errs := make(chan error, n+3)
	for i := range n {
		wg.Go(func() {
			res, err := d.Acquire(ctx, req(fmt.Sprintf("%s/%d", base, i), "t"))
			if err == nil && (!res.Acquired || res.Fence == 0) {
				err = fmt.Errorf("acquire %d: %+v, want acquired with a fence", i, res)
			}
			errs <- err
		})
	}
	waitQueued(t, queued, n)
	// Each call keeps its own reply: refresh and release of the free
	// key report not held, and inspect reports it free.
	wg.Go(func() {
		if err := d.Refresh(ctx, mine, "t", time.Second); !errors.Is(err, driver.ErrNotHeld) {
			errs <- fmt.Errorf("refresh of a free key: %v, want ErrNotHeld", err)
		}
	})
	wg.Go(func() {
		if err := d.Release(ctx, mine, "t"); !errors.Is(err, driver.ErrNotHeld) {
			errs <- fmt.Errorf("release of a free key: %v, want ErrNotHeld", err)
		}
	})
	wg.Go(func() {
		if _, ok, err := d.(driver.Inspector).Inspect(ctx, mine); ok || err != nil {
			errs <- fmt.Errorf("inspect of a free key: held %v, %v", ok, err)
		}
	})
	waitQueued(t, queued, 3)
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	trips := rt.since(before)
	if len(trips) != 1 || len(trips[0]) != n+3 {
		t.Fatalf("the %d calls queued behind one in flight went out in %d round trips (%v), want one pipeline of %d", n+3, len(trips), trips, n+3)
	}
}

// TestPipelineCancelledCallNotSent: a call whose context ends while it
// waits for the next batch returns with the context's error, and its
// command is never sent; the other calls of the batch go on.
func TestPipelineCancelledCallNotSent(t *testing.T) {
	d, rt, queued := pipelineDriver(t)
	ctx := testCtx(t)
	base := uniqueKey("pipe/cancel/")
	release := occupy(t, d, rt, base)
	before := rt.count()

	gone := base + "/gone"
	cctx, cancel := context.WithCancel(ctx)
	goneErr := make(chan error, 1)
	go func() {
		_, err := d.Acquire(cctx, req(gone, "t"))
		goneErr <- err
	}()
	stays := make(chan error, 1)
	waitQueued(t, queued, 1)
	go func() {
		res, err := d.Acquire(ctx, req(base+"/stays", "t"))
		if err == nil && !res.Acquired {
			err = fmt.Errorf("not acquired: %+v", res)
		}
		stays <- err
	}()
	waitQueued(t, queued, 1)
	cancel()
	if err := <-goneErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire whose context ended in the queue = %v, want context.Canceled", err)
	}
	release()
	if err := <-stays; err != nil {
		t.Fatalf("the other call of the batch: %v", err)
	}
	for _, trip := range rt.since(before) {
		for _, cmd := range trip {
			if strings.Contains(cmd, gone) {
				t.Errorf("a call cancelled before its batch left was sent: %s", cmd)
			}
		}
	}
	admin := redistest.Shared(t).Client(t)
	if n := admin.Exists(ctx, "dlock:{"+gone+"}").Val(); n != 0 {
		t.Errorf("the lock of a cancelled, unsent acquire exists")
	}
}

// TestPipelineCancelAfterSend: a caller whose context ends after its
// command left in a batch returns at once, with the context's error,
// while the batch is still unanswered; the others get their replies.
func TestPipelineCancelAfterSend(t *testing.T) {
	d, rt, queued := pipelineDriver(t)
	ctx := testCtx(t)
	base := uniqueKey("pipe/late/")
	release := occupy(t, d, rt, base)
	// The batch behind the gate carries "late", and is held in turn.
	late := base + "/late"
	batchHeld, batchRelease := rt.holdAll(late)
	defer batchRelease()
	cctx, cancel := context.WithCancel(ctx)
	lateErr := make(chan error, 1)
	go func() {
		_, err := d.Acquire(cctx, req(late, "t"))
		lateErr <- err
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
	if err := <-lateErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire whose context ended with its batch in flight = %v, want context.Canceled", err)
	}
	batchRelease()
	if err := <-other; err != nil {
		t.Fatalf("the other call of the batch: %v", err)
	}
}

// TestPipelineLoneCallerDirect: a caller alone never waits for a batch: each
// call is one command, sent as a lone round trip, never a pipeline, by
// the caller's own goroutine, so that nothing (no timer, no flusher) can
// delay it.
func TestPipelineLoneCallerDirect(t *testing.T) {
	d, rt, _ := pipelineDriver(t)
	ctx := testCtx(t)
	before := rt.count()
	me := goroutineID()
	const n = 20
	for i := range n {
		key := uniqueKey(fmt.Sprintf("pipe/lone/%d/", i))
		if _, err := d.Acquire(ctx, req(key, "t")); err != nil {
			t.Fatal(err)
		}
		if err := d.Refresh(ctx, key, "t", time.Second); err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.(driver.Inspector).Inspect(ctx, key); err != nil {
			t.Fatal(err)
		}
		if err := d.Release(ctx, key, "t"); err != nil {
			t.Fatal(err)
		}
	}
	trips := rt.since(before)
	if len(trips) != 4*n {
		t.Fatalf("%d calls of a lone caller took %d round trips, want one each", 4*n, len(trips))
	}
	for _, trip := range trips {
		if len(trip) != 1 {
			t.Fatalf("a lone caller's call went out in a pipeline of %d: %v", len(trip), trip)
		}
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for i, gid := range rt.gids[before:] {
		if gid != me {
			t.Fatalf("a lone caller's command %v was sent by goroutine %s, not the caller's %s", rt.trips[before+i], gid, me)
		}
	}
}

// TestPipelineConnectionFailure: when the connection fails under a batch,
// every call of it gets an error (outcome unknown or unavailable), none
// hangs, and the driver works again once the server is back.
func TestPipelineConnectionFailure(t *testing.T) {
	s := redistest.Shared(t)
	px := redistest.NewProxy(t, s.Addr())
	o := s.Options()
	o.Addr = px.Addr()
	o.MaxRetries = -1
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	d := redisdriver.NewDriver(c, nil)
	t.Cleanup(func() { d.Close() })
	ctx := testCtx(t)
	base := uniqueKey("pipe/fail/")
	var wg sync.WaitGroup
	px.Partition()
	for i := range 8 {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := d.Acquire(cctx, req(fmt.Sprintf("%s/%d", base, i), "t"))
			var ne net.Error
			if err == nil || !(driver.OutcomeUnknown(err) || errors.Is(err, driver.ErrUnavailable) || errors.As(err, &ne)) {
				t.Errorf("acquire %d through a partition: %v, want an error", i, err)
			}
		})
	}
	wg.Wait()
}
