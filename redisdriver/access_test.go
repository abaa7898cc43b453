package redisdriver_test

import (
	"strings"
	"testing"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
)

// TestOpenChecksScriptCommands: a user who may run scripts but not one of
// the commands they run (TIME, SET, ZRANGEBYSCORE, PEXPIRE, WAIT with
// replica_acks, HSET and ZCOUNT of the semaphore scripts, PUBSUB NUMSUB),
// or not EVAL (needed once the server forgets the
// scripts), fails at Open, naming the command, instead of passing Open
// and failing at every acquire (or, for a command called with pcall,
// silently never pruning the waiter queue).
func TestOpenChecksScriptCommands(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	ctx := testCtx(t)
	admin := s.Client(t)
	for _, c := range []struct{ cmd, query string }{
		{"time", ""}, {"set", ""}, {"zrangebyscore", ""}, {"pexpire", ""}, {"wait", "?replica_acks=1"},
		{"hset", ""}, {"zcount", ""}, // semaphore scripts
		{"pubsub|numsub", ""}, // a release asks whether a waiter listens
		// Last, once the scripts are cached: EVALSHA then works
		// without +eval, until a SCRIPT FLUSH or a restart.
		{"eval", ""},
	} {
		t.Run(c.cmd, func(t *testing.T) {
			user := "no" + strings.ReplaceAll(c.cmd, "|", "-")
			rule := strings.ReplaceAll(minimalACL+" ", " +"+c.cmd+" ", " ")
			if rule == minimalACL+" " {
				t.Fatalf("+%s is not in the minimal rule", c.cmd)
			}
			if err := admin.Do(ctx, append([]any{"ACL", "SETUSER", user, "reset"}, toAny(strings.Fields(rule))...)...).Err(); err != nil {
				t.Fatal(err)
			}
			l, err := dlock.Open(ctx, "redis://"+user+":locker-secret-pw@"+s.Addr()+"/0"+c.query, nil)
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
