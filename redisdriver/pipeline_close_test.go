package redisdriver_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

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

// TestPipelineCloseDuringPausedBatch: Close while a batch whose callers
// have no deadline waits on a server that does not answer (CLIENT PAUSE)
// returns once the client's read timeout ends the batch, not when the
// server answers, and the batch's callers report an unknown outcome.
func TestPipelineCloseDuringPausedBatch(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	t.Cleanup(func() { admin.ClientUnpause(context.Background()) })
	base := uniqueKey("pipe/closepause/")
	o := s.Options() // ReadTimeout 2s
	o.MaxRetries = -1
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	rt := &roundTrips{}
	c.AddHook(rt)
	paused := make(chan error, 8)
	c.AddHook(pauseHook{base + "/x", admin, paused})
	d := redisdriver.NewDriver(c, nil)
	t.Cleanup(func() { d.Close() })
	queued := make(chan struct{}, 1024)
	redisdriver.SetQueuedHookForTest(d, func() { queued <- struct{}{} })
	ctx := testCtx(t)
	if _, err := d.Acquire(ctx, req(base+"/warm", "w")); err != nil {
		t.Fatal(err)
	}
	release := occupy(t, d, rt, base)
	const n = 2
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = d.Acquire(context.Background(), req(fmt.Sprintf("%s/x/%d", base, i), "t"))
		})
	}
	waitQueued(t, queued, n)
	release()
	if err := <-paused; err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return while a batch without deadline waited on a paused server")
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("Close took %v, past the 2s read timeout and close to the server's 10s pause", took)
	}
	wg.Wait()
	admin.ClientUnpause(ctx)
	for i, err := range errs {
		if !driver.OutcomeUnknown(err) {
			t.Errorf("acquire %d of a batch cut by the read timeout: %v, want an unknown outcome", i, err)
		}
	}
}
