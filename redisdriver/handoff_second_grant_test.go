package redisdriver_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestHandoffLaterGrantReplacesUnread: a grant to a waiter's token while
// an earlier one is still unread in its channel takes that one's place
// (the earlier grant has ended: a key is granted only when free), and the
// driver releases nothing of its own: the token keeps the key, and the
// channel names the grant that stands.
func TestHandoffLaterGrantReplacesUnread(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := newHandoffDriver(t, redis.NewClient(s.Options()))
	ctx := testCtx(t)
	key := uniqueKey("handoff/later-grant/")
	const token = "waiter"
	turns, cancel, err := d.SubscribeHandoff(ctx, key, token)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	// A plain subscriber of the key, on the same connection: its wake-up,
	// published after the grants, shows that they were delivered.
	woken, unsub, err := d.Subscribe(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	res, err := d.Acquire(ctx, driver.Request{Key: key, Token: token, TTL: 30 * time.Second, Owner: "waiter"})
	if err != nil || !res.Acquired {
		t.Fatalf("Acquire = %+v, %v", res, err)
	}
	// The grants' messages, as wakeNext publishes them, the second for a
	// grant made after the first ended.
	for _, payload := range []string{"grant 1 5", "grant 2 " + strconv.FormatUint(res.Fence, 10)} {
		if err := admin.Publish(ctx, waiterChannel(key, token), payload).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := admin.Publish(ctx, "dlock:{"+key+"}:released", "").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("the plain subscriber was not woken")
	}
	want := driver.Turn{Granted: true, Attempt: 2, Fence: res.Fence}
	if got := turnWithin(t, turns, time.Second, "the waiter"); got != want {
		t.Fatalf("the waiter's channel holds %+v, want the later grant %+v", got, want)
	}
	if tok, _, _, _ := lockValue(t, ctx, admin, key); tok != token {
		t.Fatalf("the key is held by %q, want the waiter's token: the driver released a grant", tok)
	}
	if err := d.Release(ctx, key, token); err != nil {
		t.Fatalf("Release by the waiter's token: %v", err)
	}
}
