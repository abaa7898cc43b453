package pubsub_test

import (
	"testing"

	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver/internal/pubsub"
)

// TestReconnectResubscribes: when the server kills the pub/sub
// connection, the Mux reports the reset, tells the members that their
// channel was cut, subscribes it again on a new connection, wakes them
// once it is live again (a message may have been missed), and messages
// reach the Hooks again.
func TestReconnectResubscribes(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	rec := newRecorder()
	mux := pubsub.New(client, rec)
	defer mux.Close()
	ctx := testCtx(t)
	const ch = "pubsub/reconnect"
	m := newMember()
	join(t, mux, m, ch)

	if err := client.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	await(t, rec.resets, "reset after the connection was killed")
	await(t, m.woken, "wake-up once the subscription is live again")
	if !m.wasCut() {
		t.Error("the member was not told that its channel was cut")
	}
	if n := client.PubSubNumSub(ctx, ch).Val()[ch]; n != 1 {
		t.Fatalf("the server counts %d subscribers of %q after the reconnect, want 1", n, ch)
	}
	if err := client.Publish(ctx, ch, "again").Err(); err != nil {
		t.Fatal(err)
	}
	if msg := await(t, rec.messages, "message after the reconnect"); msg != (message{ch, "again", true}) {
		t.Fatalf("Hooks.Message got %+v", msg)
	}
}
