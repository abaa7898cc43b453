package redisdriver_test

import (
	"context"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// TestUndoThatGaveUpStillFollows: an acquire whose caller left is on its
// way to the server, late (a slow path; a node slower than its caller's
// patience); the undo that follows waits for its reply, within the
// undo's own deadline, which ends first (a short ReleaseTimeout, or
// Redlock's node timeout). The undo reports an unknown outcome; it must
// still free the key once the acquire has landed, not leave it held by
// nobody for its TTL. Through the driver, and through a Locker whose
// ReleaseTimeout is shorter than the delay.
func TestUndoThatGaveUpStillFollows(t *testing.T) {
	for _, via := range []string{"driver", "locker"} {
		t.Run(via, func(t *testing.T) {
			s := redistest.Shared(t)
			base := uniqueKey("gaveup/")
			dd := &delayingDialer{marker: base + "/x}", delay: 300 * time.Millisecond, forwarded: make(chan struct{})}
			o := s.Options()
			o.Dialer = dd.dial
			o.MaxRetries = -1
			c := redis.NewClient(o)
			t.Cleanup(func() { c.Close() })
			d := redisdriver.NewDriver(c, nil)
			l := dlock.New(d, &dlock.Options{ReleaseTimeout: 50 * time.Millisecond, LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}})
			t.Cleanup(func() { l.Close() })
			ctx := testCtx(t)
			// The scripts loaded: a NOSCRIPT reply would be an acquire
			// that did not run.
			if _, err := d.Acquire(ctx, req(base+"/warm", "w")); err != nil {
				t.Fatal(err)
			}

			cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			switch via {
			case "driver":
				if _, err := d.Acquire(cctx, req(base+"/x", "t")); !driver.OutcomeUnknown(err) {
					t.Fatalf("acquire cut by its deadline: %v, want an unknown outcome", err)
				}
				uctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				defer cancel()
				err := d.Release(uctx, base+"/x", "t")
				t.Logf("the undo, before the acquire landed: %v", err)
				if !driver.OutcomeUnknown(err) {
					t.Fatalf("the undo answered %v before the acquire it undoes landed", err)
				}
			case "locker":
				if lease, err := l.TryAcquire(cctx, base+"/x", nil); err == nil {
					lease.Release(ctx)
					t.Fatal("TryAcquire succeeded although its acquire reached the server after its deadline")
				}
			}
			select {
			case <-dd.forwarded:
			case <-time.After(10 * time.Second):
				t.Fatal("the acquire never reached the server")
			}
			admin := s.Client(t)
			deadline := time.Now().Add(time.Second)
			for admin.Exists(ctx, "dlock:{"+base+"/x}").Val() != 0 {
				if time.Now().After(deadline) {
					t.Fatal("the key stays held by the acquire whose undo gave up waiting for it")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestQueuedReleaseThatGaveUpStillGoesOut: a release (an undo, say)
// queued for the next batch while every lane is busy, whose caller's
// context ends before that batch goes out, still goes out with it: the
// driver held it back, and dropped it would leave the key held by nobody
// for its TTL. Its caller was told the outcome is unknown.
func TestQueuedReleaseThatGaveUpStillGoesOut(t *testing.T) {
	d, rt, queued := pipelineDriver(t)
	ctx := testCtx(t)
	base := uniqueKey("gaveup/queued/")
	key := base + "/x"
	if res, err := d.Acquire(ctx, req(key, "t")); err != nil || !res.Acquired {
		t.Fatalf("Acquire = %+v, %v", res, err)
	}
	release := occupy(t, d, rt, base)
	cctx, cancel := context.WithCancel(ctx)
	released := make(chan error, 1)
	go func() { released <- d.Release(cctx, key, "t") }()
	waitQueued(t, queued, 1)
	cancel()
	if err := <-released; !driver.OutcomeUnknown(err) {
		t.Fatalf("a release whose context ended in the queue: %v, want an unknown outcome", err)
	}
	release()
	admin := redistest.Shared(t).Client(t)
	deadline := time.Now().Add(5 * time.Second)
	for admin.Exists(ctx, "dlock:{"+key+"}").Val() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the key stays held: the release its caller gave up on in the queue was dropped")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
