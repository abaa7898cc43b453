package redisdriver_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// TestBusyServerIsRetried: BUSY (a script running past
// busy-reply-threshold) is a refusal before anything ran: ErrUnavailable,
// retried by Locker.Acquire until the script is killed, not a permanent
// failure.
func TestBusyServerIsRetried(t *testing.T) {
	s := redistest.StartProcess(t, &redistest.Options{Args: []string{"--busy-reply-threshold", "20"}})
	ctx := testCtx(t)
	admin := s.Client(t)
	o := s.Options()
	o.ReadTimeout = -1
	blocker := newClient(t, o)
	scriptDone := make(chan error, 1)
	go func() {
		scriptDone <- blocker.Eval(ctx, "while true do end", nil).Err()
	}()
	// Wait for the script to run: the server answers BUSY from then on.
	for {
		err := admin.Ping(ctx).Err()
		if err != nil && strings.HasPrefix(err.Error(), "BUSY") {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the server never got busy")
		}
		time.Sleep(5 * time.Millisecond)
	}
	spy := newErrorSpy(redisdriver.NewDriver(s.Client(t), nil))
	l := dlock.New(spy, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 10 * time.Second, RenewInterval: -1, Retry: dlock.ExponentialBackoff(20*time.Millisecond, 20*time.Millisecond)}})
	t.Cleanup(func() { l.Close() })
	actx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	done := goAcquire(actx, l, "busy/k", nil)
	var first error
	select {
	case first = <-spy.errs:
	case a := <-done:
		admin.ScriptKill(ctx)
		<-scriptDone
		t.Fatalf("Acquire returned while the server was busy: %v", a.err)
	}
	if !errors.Is(first, dlock.ErrUnavailable) {
		t.Errorf("BUSY reported as %v; want ErrUnavailable", first)
	}
	if err := admin.ScriptKill(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	<-scriptDone
	a := <-done
	if a.err != nil {
		t.Fatalf("Acquire after the script was killed: %v", a.err)
	}
	if err := a.lease.Release(ctx); err != nil {
		t.Error(err)
	}
}

// TestScriptFlush: after SCRIPT FLUSH (a restart, a failover to a replica
// that never ran the scripts, an operator) every operation still works:
// each path that runs a script by its SHA falls back to sending it
// (NOSCRIPT), pipelines included, on standalone, Sentinel with
// replica_acks, and Cluster.
func TestScriptFlush(t *testing.T) {
	type target struct {
		name   string
		client func(t *testing.T) redis.UniversalClient
		opts   *redisdriver.Options
		flush  func(ctx context.Context, t *testing.T)
	}
	flushAll := func(servers ...*redistest.Server) func(ctx context.Context, t *testing.T) {
		return func(ctx context.Context, t *testing.T) {
			for _, s := range servers {
				c := redis.NewClient(s.Options())
				err := c.ScriptFlush(ctx).Err()
				c.Close()
				if err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	sa := redistest.Shared(t)
	se := redistest.SharedSentinel(t)
	cl := redistest.SharedCluster(t)
	targets := []target{
		{"Standalone", func(t *testing.T) redis.UniversalClient { return sa.Client(t) }, nil, flushAll(sa)},
		{"SentinelReplicaAcks", func(t *testing.T) redis.UniversalClient { return se.Client(t) },
			&redisdriver.Options{ReplicaAcks: 1, ReplicaTimeout: 2 * time.Second}, flushAll(se.Master(), se.Replica())},
		{"Cluster", func(t *testing.T) redis.UniversalClient { return cl.Client(t) }, nil, flushAll(cl.Nodes()...)},
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			ctx := testCtx(t)
			d := redisdriver.NewDriver(tg.client(t), tg.opts)
			defer d.Close()
			key := uniqueKey("flush/")
			step := func(what string, err error) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s after SCRIPT FLUSH: %v", what, err)
				}
			}
			tg.flush(ctx, t)
			res, err := d.Acquire(ctx, req(key, "a"))
			step("Acquire", err)
			if !res.Acquired {
				t.Fatal("Acquire of a free key: not acquired")
			}
			tg.flush(ctx, t)
			w := req(key, "b")
			res, err = acquireQueued(ctx, t, d, w, driver.Queued{Wait: time.Second})
			step("busy Acquire", err)
			if res.Acquired {
				t.Fatal("busy key acquired")
			}
			tg.flush(ctx, t)
			nf := req(key, "c")
			nf.NoFence = true
			_, err = d.Acquire(ctx, nf)
			step("busy NoFence Acquire", err)
			tg.flush(ctx, t)
			step("Refresh", d.Refresh(ctx, key, "a", 10*time.Second))
			tg.flush(ctx, t)
			errs := d.(driver.BatchRefresher).RefreshBatch(ctx, []driver.RefreshRequest{{Key: key, Token: "a", TTL: 10 * time.Second}})
			step("RefreshBatch", errs[0])
			tg.flush(ctx, t)
			_, _, err = d.(driver.Inspector).Inspect(ctx, key)
			step("Inspect", err)
			tg.flush(ctx, t)
			step("RaiseFence", d.(driver.FenceRaiser).RaiseFence(ctx, key, "a", res.Fence+1))
			tg.flush(ctx, t)
			step("Release", d.Release(ctx, key, "a"))
		})
	}
}
