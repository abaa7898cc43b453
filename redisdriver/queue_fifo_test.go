package redisdriver_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// deadEntries queues n waiters on key that gave up long ago, as a busy
// attempt would have left them: arrival scores from first on, deadlines
// (in the attempts hash) in 1970.
func deadEntries(t *testing.T, admin *redis.Client, key, prefix string, first float64, n int) {
	t.Helper()
	ctx := testCtx(t)
	for i := range n {
		tag := prefix + strconv.Itoa(i)
		if err := admin.ZAdd(ctx, "dlock:{"+key+"}:queue", redis.Z{Score: first + float64(i), Member: tag}).Err(); err != nil {
			t.Fatal(err)
		}
		if err := admin.HSet(ctx, "dlock:{"+key+"}:attempts", tag, "1").Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestQueueFirstArrival: a waiter keeps its place (its first attempt's
// arrival) however often it attempts again, and its deadline, kept in the
// attempts hash, moves later with each attempt.
func TestQueueFirstArrival(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	ctx := testCtx(t)
	key := uniqueKey("queue/fifo/")
	qk, ak := "dlock:{"+key+"}:queue", "dlock:{"+key+"}:attempts"
	if _, err := d.Acquire(ctx, req(key, "holder")); err != nil {
		t.Fatal(err)
	}
	w, wait := req(key, "waiter"), 10*time.Second
	busy := func() {
		t.Helper()
		if res, err := acquireQueued(ctx, t, d, w, driver.Queued{Wait: wait}); err != nil || res.Acquired {
			t.Fatalf("waiter's Acquire = %+v, %v; want busy", res, err)
		}
	}
	busy()
	score := admin.ZScore(ctx, qk, waiterTag("waiter")).Val()
	first, err := strconv.ParseInt(admin.HGet(ctx, ak, waiterTag("waiter")).Val(), 10, 64)
	if err != nil {
		t.Fatalf("the waiter's deadline is not stored: %v", err)
	}
	now, err := admin.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if arr := time.UnixMicro(int64(score)); arr.After(now) || now.Sub(arr) > 5*time.Second {
		t.Errorf("the waiter's score is %v, server time now %v: want its arrival", arr, now)
	}
	time.Sleep(5 * time.Millisecond) // a later server time
	wait = time.Second               // a shorter Wait must not move the deadline earlier
	busy()
	if again := admin.ZScore(ctx, qk, waiterTag("waiter")).Val(); again != score {
		t.Errorf("the waiter's score moved from %.0f to %.0f on its next attempt: it lost its place", score, again)
	}
	if dl, _ := strconv.ParseInt(admin.HGet(ctx, ak, waiterTag("waiter")).Val(), 10, 64); dl < first {
		t.Errorf("the waiter's deadline moved earlier, from %d to %d", first, dl)
	}
	if ttl := admin.PTTL(ctx, qk).Val(); ttl < 15*time.Second {
		t.Errorf("the queue expires in %v after a shorter Wait: want no sooner than the first attempt kept it (2*10s+1s)", ttl)
	}
}

// TestQueuePrunesDeadFromHead: a busy attempt removes the dead entries at
// the head of the queue, and their attempts, at most 8 per script.
func TestQueuePrunesDeadFromHead(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	ctx := testCtx(t)
	key := uniqueKey("queue/head/")
	qk, ak := "dlock:{"+key+"}:queue", "dlock:{"+key+"}:attempts"
	if _, err := d.Acquire(ctx, req(key, "holder")); err != nil {
		t.Fatal(err)
	}
	deadEntries(t, admin, key, "dead", 1, 12)
	w := req(key, "waiter")
	if res, err := acquireQueued(ctx, t, d, w, driver.Queued{Wait: 10 * time.Second}); err != nil || res.Acquired {
		t.Fatalf("waiter's Acquire = %+v, %v; want busy", res, err)
	}
	got := admin.ZRange(ctx, qk, 0, -1).Val()
	want := []string{"dead8", "dead9", "dead10", "dead11", waiterTag("waiter")}
	if len(got) != len(want) {
		t.Fatalf("queue after one busy attempt = %q; want the 8 dead at the head removed: %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("queue after one busy attempt = %q; want %q", got, want)
		}
	}
	if n := admin.HExists(ctx, ak, "dead0").Val(); n {
		t.Error("a pruned entry's attempt is still stored")
	}
	if res, err := acquireQueued(ctx, t, d, w, driver.Queued{Wait: 10 * time.Second}); err != nil || res.Acquired {
		t.Fatalf("waiter's Acquire = %+v, %v; want busy", res, err)
	}
	if got := admin.ZRange(ctx, qk, 0, -1).Val(); len(got) != 1 || got[0] != waiterTag("waiter") {
		t.Errorf("queue after a second busy attempt = %q; want only the live waiter", got)
	}
	if n := admin.HLen(ctx, ak).Val(); n != 1 {
		t.Errorf("the attempts hash has %d fields; want the live waiter's only", n)
	}
}

// TestQueuePrunesBehindLiveHead: dead entries behind a live waiter at the
// head (one that waits long for a key held long, while others come and go)
// are pruned too: the attempts sweep the queue, a bounded window each, so
// the queue does not grow without bound while its head lives.
func TestQueuePrunesBehindLiveHead(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	ctx := testCtx(t)
	key := uniqueKey("queue/behind/")
	qk := "dlock:{" + key + "}:queue"
	if _, err := d.Acquire(ctx, req(key, "holder")); err != nil {
		t.Fatal(err)
	}
	head := req(key, "head")
	if res, err := acquireQueued(ctx, t, d, head, driver.Queued{Wait: 10 * time.Second}); err != nil || res.Acquired {
		t.Fatalf("head's Acquire = %+v, %v; want busy", res, err)
	}
	now := float64(time.Now().UnixMicro())
	const n = 100
	deadEntries(t, admin, key, "dead", now+1e6, n) // behind the head
	last := admin.ZCard(ctx, qk).Val()
	for i := range 2 * n / 8 {
		if res, err := acquireQueued(ctx, t, d, head, driver.Queued{Wait: 10 * time.Second}); err != nil || res.Acquired {
			t.Fatalf("head's Acquire %d = %+v, %v; want busy", i, res, err)
		}
		c := admin.ZCard(ctx, qk).Val()
		if last-c > 8 {
			t.Fatalf("one busy attempt pruned %d entries; want at most 8 (bounded work)", last-c)
		}
		last = c
	}
	if got := admin.ZRange(ctx, qk, 0, -1).Val(); len(got) != 1 || got[0] != waiterTag("head") {
		t.Errorf("queue after %d attempts of its live head = %d entries; want the dead behind it pruned", 2*n/8, len(got))
	}
}

// TestWakeSkipsDeadHead: a release passes over the dead entries at the
// head of the queue, even one whose channel has a listener (no publish,
// their attempts removed), and hands the key
// to the first live waiter behind them.
func TestWakeSkipsDeadHead(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	w := newHandoffDriver(t, redis.NewClient(s.Options()))
	ctx := testCtx(t)
	key := uniqueKey("queue/wake/")
	qk, ak := "dlock:{"+key+"}:queue", "dlock:{"+key+"}:attempts"
	if _, err := holder.Acquire(ctx, req(key, "holder")); err != nil {
		t.Fatal(err)
	}
	deadEntries(t, admin, key, "dead", 1, 5)
	turns, cancel, err := w.SubscribeHandoff(ctx, key, "waiter")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	queue(t, ctx, w, key, "waiter", 1, 10*time.Second)
	deadEntries(t, admin, key, "early", 2, 3) // dead, still at the head
	// A dead waiter may still listen (it gave up but its client lives):
	// its deadline, not its channel, tells it is gone.
	ps := admin.Subscribe(ctx, "dlock:{"+key+"}:w:early0")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	if turn := turnWithin(t, turns, 5*time.Second, "the live waiter behind dead ones"); !turn.Granted || turn.Attempt != 1 {
		t.Fatalf("the live waiter got %+v; want a grant on attempt 1", turn)
	}
	if n := admin.Exists(ctx, qk, ak).Val(); n != 0 {
		t.Errorf("%d of the queue and its attempts remain: the dead entries passed over must be removed with the waiter's", n)
	}
	if err := w.Release(ctx, key, "waiter"); err != nil {
		t.Fatal(err)
	}
}
