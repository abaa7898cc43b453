package redisdriver_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
)

// TestForeignQueueKeyKept: someone else's data at a lock's queue key
// (PREFIX{KEY}:queue) is never touched: a waiter's busy attempt used to
// set an expiry on it, so it vanished a few seconds later.
func TestForeignQueueKeyKept(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	ctx := testCtx(t)
	key := uniqueKey("foreignqueue/")
	qk := "dlock:{" + key + "}:queue"
	if err := admin.Set(ctx, qk, "someone else's", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Acquire(ctx, req(key, "holder")); err != nil {
		t.Fatal(err)
	}
	w := req(key, "waiter")
	w.Wait = 100 * time.Millisecond
	if res, err := d.Acquire(ctx, w); err != nil || res.Acquired {
		t.Fatalf("waiter's Acquire = %+v, %v; want busy", res, err)
	}
	if err := d.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	if ttl := admin.PTTL(ctx, qk).Val(); ttl != -1 {
		t.Errorf("foreign key %s got an expiry (PTTL %v): someone else's data would be deleted", qk, ttl)
	}
	if v := admin.Get(ctx, qk).Val(); v != "someone else's" {
		t.Errorf("foreign key %s = %q, changed", qk, v)
	}
}

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
	l := dlock.New(spy, &dlock.Options{TTL: 10 * time.Second, RenewInterval: -1,
		Retry: dlock.LinearBackoff(20 * time.Millisecond)})
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

// TestOpenChecksScriptCommands: a user who may run scripts but not one of
// the commands they run (TIME, SET, ZRANGEBYSCORE, PEXPIRE, WAIT with
// replica_acks) fails at Open, naming the command, instead of passing Open
// and failing at every acquire (or, for a command called with pcall,
// silently never pruning the waiter queue).
func TestOpenChecksScriptCommands(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	ctx := testCtx(t)
	admin := s.Client(t)
	for _, c := range []struct{ cmd, query string }{
		{"time", ""}, {"set", ""}, {"zrangebyscore", ""}, {"pexpire", ""}, {"wait", "?replica_acks=1"},
	} {
		t.Run(c.cmd, func(t *testing.T) {
			user := "no" + c.cmd
			rule := strings.ReplaceAll(minimalACL+" ", " +"+c.cmd+" ", " ")
			if rule == minimalACL+" " {
				t.Fatalf("+%s is not in the minimal rule", c.cmd)
			}
			if err := admin.Do(ctx, append([]any{"ACL", "SETUSER", user, "reset"}, toAny(strings.Fields(rule))...)...).Err(); err != nil {
				t.Fatal(err)
			}
			l, err := dlock.Open(ctx, "redis://"+user+":locker-secret-pw@"+s.Addr()+"/0"+c.query)
			if err == nil {
				l.Close()
				t.Fatalf("Open succeeded for a user without +%s, which the driver needs", c.cmd)
			}
			if !strings.Contains(strings.ToLower(err.Error()), c.cmd) {
				t.Errorf("Open error does not name %s: %v", c.cmd, err)
			}
			noSecret(t, err, "locker-secret-pw")
		})
	}
}

// TestScriptPermissionErrorSaysSo: a command refused inside a script
// (Redis answers "ERR The user executing the script can't run this
// command") is reported as a missing permission, like NOPERM, for a
// driver made by New, which Open's check does not cover.
func TestScriptPermissionErrorSaysSo(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	ctx := testCtx(t)
	rule := strings.ReplaceAll(minimalACL, " +time ", " ")
	if err := s.Client(t).Do(ctx, append([]any{"ACL", "SETUSER", "notime", "reset"}, toAny(strings.Fields(rule))...)...).Err(); err != nil {
		t.Fatal(err)
	}
	o := s.Options()
	o.Username, o.Password = "notime", "locker-secret-pw"
	d := redisdriver.NewDriver(newClient(t, o), nil)
	defer d.Close()
	_, err := d.Acquire(ctx, req("perm/k", "tok"))
	if err == nil || !strings.Contains(err.Error(), "lacks a permission") {
		t.Errorf("Acquire without +time = %v; want an error saying the user lacks a permission", err)
	}
}
