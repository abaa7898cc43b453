package redisdriver_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// TestReplicaAcksFailedUndoIsUnknown: an acquire with ReplicaAcks on a
// master without replicas is granted, then undone because WAIT counts no
// replica. When that undo fails (here: a proxy that holds every reply
// 400ms, longer than an undo may take), the key stays held by
// a token nobody will hold: the error must say the outcome is unknown, so
// that the caller undoes it again, and never ErrUnavailable ("surely not
// applied"), after which nobody releases the key before its TTL.
func TestReplicaAcksFailedUndoIsUnknown(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	admin := s.Client(t)
	px := redistest.NewProxy(t, s.Addr())
	o := s.Options()
	o.Addr = px.Addr()
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	d := redisdriver.NewDriver(c, &redisdriver.Options{ReplicaAcks: 1, ReplicaTimeout: 20 * time.Millisecond})
	t.Cleanup(func() { d.Close() })
	ctx := testCtx(t)
	px.Latency(400 * time.Millisecond)

	_, err := d.Acquire(ctx, driver.Request{Key: "replica-undo", Token: "tok", TTL: time.Minute, Owner: "me"})
	if err == nil {
		t.Fatal("acquire succeeded without a replica")
	}
	held, herr := admin.Exists(ctx, "dlock:{replica-undo}").Result()
	if herr != nil {
		t.Fatal(herr)
	}
	if held == 1 && errors.Is(err, driver.ErrUnavailable) {
		t.Errorf("acquire = %v: ErrUnavailable (surely not applied), but the key is held by the token", err)
	}
	if held == 1 && !driver.OutcomeUnknown(err) {
		t.Errorf("acquire = %v; with the key left held, want an error of unknown outcome", err)
	}
	if held == 0 {
		t.Fatalf("the undo got through despite the proxy's latency (error %v): the test no longer makes it fail", err)
	}
}

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
