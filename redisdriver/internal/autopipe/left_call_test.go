package autopipe_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver/internal/autopipe"
)

// TestNextCallOnKeyWaitsForLeftCall: an awaited command whose caller
// leaves before its reply runs on to its reply, and the next call on its
// key goes out only after that reply: the RPUSH after a left BLPOP must
// not feed the BLPOP, which would find the list empty only if it ran
// first.
func TestNextCallOnKeyWaitsForLeftCall(t *testing.T) {
	client := redistest.Shared(t).Client(t)
	p := autopipe.New(client, frees)
	defer p.Wait()
	ctx := testCtx(t)
	key := "autopipe/left/" + t.Name()
	client.Del(ctx, key)

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err := p.Awaited().Do(short, "BLPOP", key, "0.5").Err()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("BLPOP: %v, want the caller's deadline", err)
	}
	if err := p.Do(ctx, "RPUSH", key, "x").Err(); err != nil {
		t.Fatal(err)
	}
	n, err := client.LLen(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("list has %d elements after the RPUSH: the RPUSH went out before the left BLPOP's reply, which took it", n)
	}
}
