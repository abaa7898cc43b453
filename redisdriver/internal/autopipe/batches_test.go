package autopipe_test

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver/internal/autopipe"
	"github.com/redis/go-redis/v9"
)

// TestLoneCallerIsNotQueued: a caller alone sends its commands at once,
// on its own goroutine, and never waits in a queue for a batch.
func TestLoneCallerIsNotQueued(t *testing.T) {
	client := redistest.Shared(t).Client(t)
	p := autopipe.New(client, frees)
	defer p.Wait()
	var queued atomic.Int64
	p.SetQueued(func() { queued.Add(1) })
	ctx := testCtx(t)
	for i := range 100 {
		if err := p.Do(ctx, "PING").Err(); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n := queued.Load(); n != 0 {
		t.Fatalf("%d calls of a lone caller were queued: a lone caller must not wait for a batch", n)
	}
}

// TestBatchFormsBehindBusyLanes: callers that arrive while every lane is
// busy queue, and go out together, each with its own reply, once a lane
// frees.
func TestBatchFormsBehindBusyLanes(t *testing.T) {
	srv := redistest.Shared(t)
	client := srv.Client(t)
	p := autopipe.New(client, frees)
	defer p.Wait()
	p.SetLanes(1, false)
	const callers = 8
	queued := make(chan struct{}, callers)
	p.SetQueued(func() { queued <- struct{}{} })
	ctx := testCtx(t)
	key := "autopipe/batch/" + t.Name()
	client.Del(ctx, key, key+":gate")

	// The one lane: a BLPOP that returns when the gate opens.
	blocked := make(chan error, 1)
	go func() { blocked <- p.Do(ctx, "BLPOP", key+":gate", 10).Err() }()
	waitBlocked(t, client, key+":gate")

	var wg sync.WaitGroup
	replies := make([]int64, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() { replies[i], errs[i] = p.Do(ctx, "INCR", key).Int64() })
	}
	for range callers {
		<-queued
	}
	if err := client.RPush(ctx, key+":gate", "open").Err(); err != nil {
		t.Fatal(err)
	}
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	slices.Sort(replies)
	for i, r := range replies {
		if r != int64(i+1) {
			t.Fatalf("replies %v: each queued caller must get its own command's reply", replies)
		}
	}
}

// waitBlocked waits until a connection of client's server runs a
// blocking command; the server announces no such event, so it asks.
func waitBlocked(t *testing.T, client *redis.Client, key string) {
	t.Helper()
	ctx := testCtx(t)
	for {
		list, err := client.ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(list, "cmd=blpop") {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no BLPOP on %q blocked", key)
		case <-time.After(time.Millisecond):
		}
	}
}
