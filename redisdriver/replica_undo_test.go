package redisdriver_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// TestReplicaAcksUndoOutlivesReplicaTimeout: an acquire granted but not
// acknowledged by enough replicas within the ReplicaTimeout (here none:
// the server has no replica) is undone before it returns ErrUnavailable.
// The undo is a release, a round trip of its own, which a short
// ReplicaTimeout (20 ms, below the 30 ms latency of the proxy the driver
// goes through) must not cut short: the key would stay held by a token
// nobody has, for the TTL.
func TestReplicaAcksUndoOutlivesReplicaTimeout(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	ctx := testCtx(t)
	px := redistest.NewProxy(t, s.Addr())
	px.Latency(30 * time.Millisecond)
	o := s.Options()
	o.Addr = px.Addr()
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	d := redisdriver.NewDriver(c, &redisdriver.Options{ReplicaAcks: 1, ReplicaTimeout: 20 * time.Millisecond})
	defer d.Close()
	key := uniqueKey("replica/undo/")
	if _, err := d.Acquire(ctx, req(key, "t")); !errors.Is(err, dlock.ErrUnavailable) {
		t.Fatalf("acquire: %v, want ErrUnavailable (no replicas)", err)
	} else {
		t.Logf("acquire: %v", err)
	}
	if v, err := admin.Get(ctx, "dlock:{"+key+"}").Result(); err != redis.Nil {
		t.Fatalf("the unacknowledged acquire returned ErrUnavailable, yet the key holds %q (%v)", v, err)
	}
}
