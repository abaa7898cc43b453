package redisdriver_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

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

// TestPipelineCloseWaitsForSenders: Close returns only after the batch a
// sender goroutine has in flight is answered (goleak in TestMain checks
// that no sender outlives the test).
func TestPipelineCloseWaitsForSenders(t *testing.T) {
	d, rt, queued := pipelineDriver(t)
	ctx := testCtx(t)
	base := uniqueKey("pipe/close/")
	release := occupy(t, d, rt, base)
	late := base + "/late"
	batchHeld, batchRelease := rt.holdAll(late)
	defer batchRelease()
	acquired := make(chan error, 1)
	go func() {
		_, err := d.Acquire(ctx, req(late, "t"))
		acquired <- err
	}()
	waitQueued(t, queued, 1)
	release() // the gate's calls return; a sender takes the queue
	<-batchHeld
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a sender's batch was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	batchRelease()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-acquired; err != nil {
		t.Fatalf("the acquire in flight at Close: %v", err)
	}
}

// TestPipelineClusterPerNode: on a Cluster each master has a batcher of
// its own. Calls on keys of one master queue behind that master's calls
// in flight and leave together, while the calls on the other masters go
// on: a master whose round trips are held back holds back no other's.
func TestPipelineClusterPerNode(t *testing.T) {
	cl := redistest.SharedCluster(t)
	c := cl.Client(t)
	rt := &roundTrips{}
	c.AddHook(rt)
	d := redisdriver.NewDriver(c, nil)
	t.Cleanup(func() { d.Close() })
	queued := make(chan struct{}, 1024)
	redisdriver.SetQueuedHookForTest(d, func() { queued <- struct{}{} })
	ctx := testCtx(t)
	base := uniqueKey("pipe/cluster/")
	nodeOf := func(key string) string {
		t.Helper()
		n, err := c.MasterForKey(ctx, "dlock:{"+key+"}")
		if err != nil {
			t.Fatal(err)
		}
		return n.Options().Addr
	}
	// keys returns n keys under prefix whose locks are (on, true) or are
	// not (on, false) on master addr.
	keys := func(prefix, addr string, on bool, n int) []string {
		var ks []string
		for i := 0; len(ks) < n; i++ {
			k := fmt.Sprintf("%s/%d", prefix, i)
			if (nodeOf(k) == addr) == on {
				ks = append(ks, k)
			}
		}
		return ks
	}
	slowNode := nodeOf(base + "/slow")
	// Load the scripts on every master, so that no EVALSHA of the test
	// meets NOSCRIPT.
	for _, k := range append(keys(base+"/warm", slowNode, true, 1), keys(base+"/warm", slowNode, false, 4)...) {
		if _, err := d.Acquire(ctx, req(k, "w")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.(driver.Inspector).Inspect(ctx, k); err != nil {
			t.Fatal(err)
		}
	}

	held, release := rt.holdAll(base + "/slow")
	t.Cleanup(release)
	for _, k := range keys(base+"/slow/gate", slowNode, true, redisdriver.MaxInFlightForTest) {
		go d.(driver.Inspector).Inspect(ctx, k)
	}
	for range redisdriver.MaxInFlightForTest {
		<-held
	}
	before := rt.count()
	const n = 4
	var slow sync.WaitGroup
	slowErrs := make(chan error, n)
	for _, k := range keys(base+"/slow/q", slowNode, true, n) {
		slow.Go(func() {
			res, err := d.Acquire(ctx, req(k, "t"))
			if err == nil && !res.Acquired {
				err = fmt.Errorf("%s not acquired: %+v", k, res)
			}
			slowErrs <- err
		})
	}
	waitQueued(t, queued, n)

	// The other masters answer while the slow one is held back.
	var fast sync.WaitGroup
	for _, k := range keys(base+"/fast", slowNode, false, 3*redisdriver.MaxInFlightForTest) {
		fast.Go(func() {
			res, err := d.Acquire(ctx, req(k, "t"))
			if err != nil || !res.Acquired {
				t.Errorf("acquire of %s on another master while one is held back: %v %+v", k, err, res)
			}
		})
	}
	fast.Wait()

	release()
	slow.Wait()
	close(slowErrs)
	for err := range slowErrs {
		if err != nil {
			t.Error(err)
		}
	}
	var batches [][]string
	for _, trip := range rt.since(before) {
		if strings.Contains(strings.Join(trip, " "), base+"/slow/q") {
			batches = append(batches, trip)
		}
	}
	if len(batches) != 1 || len(batches[0]) != n {
		t.Fatalf("the %d calls queued on the held master went out as %v, want one pipeline of %d", n, batches, n)
	}
}
