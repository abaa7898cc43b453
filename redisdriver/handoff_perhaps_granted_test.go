package redisdriver_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestHandoffPerhapsGrantedKeepsTurn: a waiter queued without an attempt
// to grant is woken alone, for its turn (a plain wake-up on its own
// channel), and gives up before reading it. Its connection was replaced
// while it waited, so the driver also tells it "perhaps granted" (Turn
// with Granted set, Attempt 0), and the caller releases its token, which
// holds nothing. The turn must not be lost with it: the next waiter is
// handed the key (or woken) at once, not at its backoff.
func TestHandoffPerhapsGrantedKeepsTurn(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	ctx := testCtx(t)
	holder := newHandoffDriver(t, redis.NewClient(s.Options()))
	w := newHandoffDriver(t, redis.NewClient(s.Options()))
	v := newHandoffDriver(t, redis.NewClient(s.Options()))
	key := uniqueKey("handoff/perhaps-turn/")
	if res, err := holder.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 30 * time.Second}); err != nil || !res.Acquired {
		t.Fatalf("holder: %+v %v", res, err)
	}
	turnsW, cancelW, err := w.SubscribeHandoff(ctx, key, "w")
	if err != nil {
		t.Fatal(err)
	}
	defer cancelW()
	queue(t, ctx, w, key, "w", 0, 30*time.Second) // queued first, no attempt to grant
	turnsV, cancelV, err := v.SubscribeHandoff(ctx, key, "v")
	if err != nil {
		t.Fatal(err)
	}
	defer cancelV()
	queue(t, ctx, v, key, "v", 1, 30*time.Second)
	// Replace w's pub/sub connection (and v's): w was cut while it waited.
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	poll(t, "both waiters to listen again", func() error {
		n, err := admin.PubSubNumSub(ctx, waiterChannel(key, "w"), waiterChannel(key, "v")).Result()
		if err != nil {
			return err
		}
		if n[waiterChannel(key, "w")] != 1 || n[waiterChannel(key, "v")] != 1 {
			return errNotYet
		}
		return nil
	})
	drainTurns(turnsW)
	drainTurns(turnsV)
	if err := holder.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	poll(t, "w's wake-up", func() error {
		if len(turnsW) == 0 {
			return errNotYet
		}
		return nil
	})
	cancelW()
	// What dlock does with the Turn found after cancel.
	turn := <-turnsW
	if turn.Granted {
		if err := w.Release(ctx, key, "w"); err != nil && !errors.Is(err, driver.ErrNotHeld) {
			t.Fatal(err)
		}
	} else {
		r := driver.Request{Key: key, Token: "w", TTL: 30 * time.Second}
		if res, err := w.Acquire(ctx, r); err == nil && res.Acquired {
			w.Release(ctx, key, "w")
		}
	}
	t.Logf("w's Turn after cancel: %+v", turn)
	select {
	case tv := <-turnsV:
		if tv.Granted {
			v.Release(ctx, key, "v")
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("the next waiter had no Turn 2 s after the release whose turn w gave up (w found %+v): the turn was lost", turn)
	}
}

func drainTurns(c <-chan driver.Turn) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}
