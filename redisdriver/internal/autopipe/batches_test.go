package autopipe_test

import (
	"context"
	"runtime"
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
// each as a round trip of its own on the caller's goroutine: it never
// waits in a queue, neither behind busy lanes nor for a flush.
func TestLoneCallerIsNotQueued(t *testing.T) {
	client := redistest.Shared(t).Client(t)
	trips := &senders{}
	client.AddHook(trips)
	p := autopipe.New(client, frees)
	defer p.Wait()
	var queued atomic.Int64
	p.SetQueued(func() { queued.Add(1) })
	ctx := testCtx(t)
	me := goroutineID()
	for i := range 100 {
		if err := p.Do(ctx, "PING").Err(); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n := queued.Load(); n != 0 {
		t.Fatalf("%d calls of a lone caller were queued: a lone caller must not wait for a batch", n)
	}
	if got := trips.from(); len(got) != 100 || slices.ContainsFunc(got, func(g string) bool { return g != me }) {
		t.Fatalf("a lone caller's 100 calls were sent in %d round trips, from goroutines %v, not %s (its own): a lone caller must send its own command at once", len(got), got, me)
	}
}

// TestQueuedCallsLeaveBeforeReply: calls that arrive while a command is
// in flight join the queue and leave as soon as it is flushed, without
// waiting for that command's reply: they are answered while it still
// blocks, from a goroutine other than their callers'.
func TestQueuedCallsLeaveBeforeReply(t *testing.T) {
	srv := redistest.Shared(t)
	client := srv.Client(t)
	trips := &senders{}
	client.AddHook(trips)
	p := autopipe.New(client, frees)
	defer p.Wait()
	ctx := testCtx(t)
	key := "autopipe/flush/" + t.Name()
	client.Del(ctx, key, key+":gate")

	blocked := make(chan error, 1)
	go func() { blocked <- p.Do(ctx, "BLPOP", key+":gate", 10).Err() }()
	waitBlocked(t, srv.Client(t), key+":gate")

	const callers = 8
	var wg sync.WaitGroup
	callerIDs := make([]string, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			callerIDs[i] = goroutineID()
			errs[i] = p.Do(ctx, "INCR", key).Err()
		})
	}
	wg.Wait() // with the BLPOP still blocked: its reply is not waited for
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	select {
	case err := <-blocked:
		t.Fatalf("BLPOP returned (%v) before its gate opened", err)
	default:
	}
	for _, g := range trips.from()[1:] { // the first is the BLPOP, sent by its caller
		if slices.Contains(callerIDs, g) {
			t.Fatalf("an INCR that found the BLPOP in flight was sent by its caller (goroutine %s): it must join the queue", g)
		}
	}
	if err := client.RPush(ctx, key+":gate", "open").Err(); err != nil {
		t.Fatal(err)
	}
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
}

// senders is a go-redis hook that records the goroutine each round trip
// (a lone command or a pipeline) was sent from, without those of
// go-redis's connection handshake (HELLO, CLIENT SETINFO), made when a
// pool dials.
type senders struct {
	mu  sync.Mutex
	ids []string
}

func (s *senders) DialHook(next redis.DialHook) redis.DialHook { return next }

func (s *senders) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); n != "hello" && n != "client" {
			s.add()
		}
		return next(ctx, cmd)
	}
}

func (s *senders) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if n := cmds[0].Name(); n != "hello" && n != "client" {
			s.add()
		}
		return next(ctx, cmds)
	}
}

func (s *senders) add() {
	id := goroutineID()
	s.mu.Lock()
	s.ids = append(s.ids, id)
	s.mu.Unlock()
}

func (s *senders) from() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids)
}

// goroutineID returns the id of the calling goroutine, from its stack
// trace: a test-only way to tell where a command was sent from.
func goroutineID() string {
	var buf [64]byte
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf[:runtime.Stack(buf[:], false)]), "goroutine "), " ")
	return id
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
