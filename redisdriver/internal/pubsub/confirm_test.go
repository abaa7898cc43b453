package pubsub_test

import (
	"testing"

	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver/internal/pubsub"
)

// TestSubscriptionLiveWhenReady: a subscription is ready only once the
// server confirmed it (the server counts the subscriber, and a message
// published then reaches the Hooks); the last member's Leave unsubscribes,
// and the server's confirmation reaches Hooks.Unsubscribed.
func TestSubscriptionLiveWhenReady(t *testing.T) {
	client := redistest.Shared(t).Client(t)
	rec := newRecorder()
	mux := pubsub.New(client, rec)
	defer mux.Close()
	ctx := testCtx(t)
	const ch = "pubsub/confirm"
	a, b := newMember(), newMember()
	subs := join(t, mux, a, ch)
	join(t, mux, b, ch) // the same subscription, counted twice

	if n := client.PubSubNumSub(ctx, ch).Val()[ch]; n != 1 {
		t.Fatalf("the server counts %d subscribers of %q once it is ready, want 1 (one connection for both members)", n, ch)
	}
	if err := client.Publish(ctx, ch, "hello").Err(); err != nil {
		t.Fatal(err)
	}
	if m := await(t, rec.messages, "message"); m != (message{ch, "hello", true}) {
		t.Fatalf("Hooks.Message got %+v", m)
	}

	mux.Leave(subs[0], a, func(*pubsub.Conn, bool) { t.Error("last ran for a member that was not the last") })
	var sent bool
	mux.Leave(subs[0], b, func(_ *pubsub.Conn, s bool) { sent = s })
	if !sent {
		t.Fatal("the last member left and no UNSUBSCRIBE went out")
	}
	if got := await(t, rec.unsubscribed, "unsubscription confirmed"); got != ch {
		t.Fatalf("Hooks.Unsubscribed(%q), want %q", got, ch)
	}
	if n := client.PubSubNumSub(ctx, ch).Val()[ch]; n != 0 {
		t.Fatalf("the server counts %d subscribers of %q after the last member left, want 0", n, ch)
	}
}

// TestJoinAfterCloseFails: a closed Mux refuses new members, and Close
// fails the subscriptions it had.
func TestJoinAfterCloseFails(t *testing.T) {
	client := redistest.Shared(t).Client(t)
	mux := pubsub.New(client, newRecorder())
	m := newMember()
	join(t, mux, m, "pubsub/closed")
	mux.Close()
	select {
	case <-m.woken:
	default:
		t.Fatal("Close failed a live subscription without waking its member")
	}
	readies := make([]*pubsub.Readiness, 1)
	if _, err := mux.Join([]string{"pubsub/closed"}, m, make([]*pubsub.Sub, 1), readies, nil); err == nil {
		t.Fatal("Join on a closed Mux succeeded")
	}
}
