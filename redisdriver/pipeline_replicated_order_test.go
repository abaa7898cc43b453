package redisdriver_test

import (
	"context"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// TestReplicatedAcquireCutByDeadlineUndoneAfter: with ReplicaAcks, an
// acquire goes out with its WAIT as one pipeline. A TryAcquire whose
// context ends while that pipeline is on its way to the server (written,
// delayed by the network) returns; the undo that follows, sent on
// another connection, must not overtake it: the key is free once the
// acquire has landed.
func TestReplicatedAcquireCutByDeadlineUndoneAfter(t *testing.T) {
	s := redistest.Shared(t)
	base := uniqueKey("replcut/")
	dd := &delayingDialer{marker: base + "/x}", delay: 200 * time.Millisecond, forwarded: make(chan struct{})}
	o := s.Options()
	o.Dialer = dd.dial
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	// No replica: WAIT answers 0 after ReplicaTimeout, and every grant
	// is undone; the acquire script still runs and takes the key.
	d := redisdriver.NewDriver(c, &redisdriver.Options{ReplicaAcks: 1, ReplicaTimeout: 10 * time.Millisecond})
	l := dlock.New(d, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}})
	t.Cleanup(func() { l.Close() })
	ctx := testCtx(t)
	// The scripts loaded: a NOSCRIPT reply would be an acquire that did
	// not run.
	if _, err := l.TryAcquire(ctx, base+"/warm", nil); err == nil {
		t.Fatal("TryAcquire granted with no replica to acknowledge it")
	}

	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if lease, err := l.TryAcquire(cctx, base+"/x", nil); err == nil {
		lease.Release(ctx)
		t.Fatal("TryAcquire succeeded although its acquire reached the server after its deadline")
	}
	select {
	case <-dd.forwarded:
	case <-time.After(10 * time.Second):
		t.Fatal("the acquire never reached the server")
	}
	admin := s.Client(t)
	for range 20 {
		if n := admin.Exists(ctx, "dlock:{"+base+"/x}").Val(); n != 0 {
			t.Fatal("the key is held by the acquire the root undid: its undo ran first")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
