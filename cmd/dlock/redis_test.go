//go:build unix

package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
)

// These tests run dlock processes against a real redis-server, from
// internal/redistest (skipped without one, unless DLOCK_REQUIRE_REDIS=1).

// redisEnv returns the environment for dlock processes on the shared test
// server, with dir as $D for the command's scripts.
func redisEnv(t *testing.T, dir string) []string {
	srv := redistest.Shared(t)
	return []string{"DLOCK_URL=redis://" + srv.Addr(), "D=" + dir}
}

// TestRedisRunBusy: two dlock run --wait 0 at once; exactly one command
// runs, the other exits with the busy status and names the holder.
func TestRedisRunBusy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := redisEnv(t, dir)
	key := uniqueKey(t)
	child := script(t, dir, "child.sh", `
echo "$DLOCK_FENCE" >> "$D/started"
while [ ! -e "$D/go" ]; do sleep 0.02; done
`)
	a := startDlock(t, "A", env, "run", "--key", key, "--owner", "owner-A", "--", child)
	b := startDlock(t, "B", env, "run", "--key", key, "--owner", "owner-B", "--", child)
	waitFor(t, 20*time.Second, "one dlock run to give up", func() bool { return a.exited() || b.exited() })
	winner, loser, holder := a, b, "owner-A"
	if a.exited() {
		winner, loser, holder = b, a, "owner-B"
	}
	if code := loser.wait(t, time.Second); code != exitBusy {
		t.Fatalf("%s: exit status %d, want %d (busy); stderr:\n%s", loser.name, code, exitBusy, loser.stderr.String())
	}
	if want := "held by " + holder + " (fence "; !strings.Contains(loser.stderr.String(), want) {
		t.Errorf("%s's message does not name the holder (%q):\n%s", loser.name, want, loser.stderr.String())
	}
	if !strings.Contains(loser.stderr.String(), ", held since ") {
		t.Errorf("%s's message does not say since when the key is held:\n%s", loser.name, loser.stderr.String())
	}
	waitFor(t, 20*time.Second, "the command to start", func() bool { return readFile(t, filepath.Join(dir, "started")) != "" })

	st := startDlock(t, "status", env, "status", key)
	if code := st.wait(t, 20*time.Second); code != 0 {
		t.Errorf("status of a held key: exit status %d, want 0; stderr:\n%s", code, st.stderr.String())
	}
	if !strings.Contains(st.stdout.String(), "held by "+holder) {
		t.Errorf("status does not name the holder %s:\n%s", holder, st.stdout.String())
	}

	// With --wait, dlock run gives up when the wait runs out.
	w := startDlock(t, "C", env, "run", "--key", key, "--wait", "300ms", "--", "true")
	if code := w.wait(t, 20*time.Second); code != exitBusy {
		t.Errorf("--wait 300ms: exit status %d, want %d (busy)", code, exitBusy)
	}
	if want := "gave up after waiting 300ms"; !strings.Contains(w.stderr.String(), want) {
		t.Errorf("--wait 300ms: stderr does not say %q:\n%s", want, w.stderr.String())
	}

	// --wait forever waits until a signal ends it, before any command.
	f := startDlock(t, "D", env, "run", "--key", key, "--wait", "forever", "--", "sh", "-c", `echo D >> "$D/started"`)
	waitFor(t, 20*time.Second, "dlock run --wait forever to wait", func() bool {
		return strings.Contains(f.stderr.String(), "waiting until it is free")
	})
	f.cmd.Process.Signal(syscall.SIGINT)
	if code := f.wait(t, 10*time.Second); code != 128+int(syscall.SIGINT) {
		t.Errorf("--wait forever, then SIGINT: exit status %d, want %d; stderr:\n%s", code, 128+int(syscall.SIGINT), f.stderr.String())
	}

	os.WriteFile(filepath.Join(dir, "go"), nil, 0o644)
	if code := winner.wait(t, 20*time.Second); code != 0 {
		t.Errorf("%s: exit status %d, want 0; stderr:\n%s", winner.name, code, winner.stderr.String())
	}
	if started := strings.Fields(readFile(t, filepath.Join(dir, "started"))); len(started) != 1 {
		t.Errorf("the command ran %d times, want once", len(started))
	}

	st = startDlock(t, "status", env, "status", "--key", key)
	if code := st.wait(t, 20*time.Second); code != exitFree {
		t.Errorf("status after release: exit status %d, want %d (free); stdout: %s", code, exitFree, st.stdout.String())
	}
}

func TestRedisRunExitStatusAndSignals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := redisEnv(t, dir)
	p := startDlock(t, "dlock run", env, "run", "--key", uniqueKey(t), "--", "sh", "-c", "exit 3")
	if code := p.wait(t, 20*time.Second); code != 3 {
		t.Errorf("exit status %d, want the command's 3; stderr:\n%s", code, p.stderr.String())
	}

	child := script(t, dir, "child.sh", `
trap 'echo TERM >> "$D/got"; exit 0' TERM
echo $$ > "$D/pid"
while :; do sleep 30 & wait $!; done
`)
	p = startDlock(t, "dlock run", env, "run", "--key", uniqueKey(t), "--", child)
	waitFor(t, 20*time.Second, "the command to start", func() bool { return readFile(t, filepath.Join(dir, "pid")) != "" })
	pid, _ := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(dir, "pid"))))
	killGroupAtEnd(t, pid)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit status %d, want the command's 0; stderr:\n%s", code, p.stderr.String())
	}
	if got := readFile(t, filepath.Join(dir, "got")); got != "TERM\n" {
		t.Errorf("the command got %q, want TERM", got)
	}
}

// TestRedisRunPartition cuts dlock run off from Redis (a partition: the
// connection stays open, nothing gets through). The command must get
// SIGTERM while the key still exists on the server, and SIGKILL before the
// lease's deadline, since it ignores SIGTERM.
func TestRedisRunPartition(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	rdb := srv.Client(t)
	px := redistest.NewProxy(t, srv.Addr())
	dir := t.TempDir()
	key := uniqueKey(t)
	const ttl, grace = 2 * time.Second, time.Second
	// The command gets SIGTERM one drift allowance before the server's
	// expiry, whatever the drift; a wide one keeps process scheduling on a
	// loaded machine from deciding this test.
	url := "redis://" + px.Addr() + "/?drift=400ms"
	child := script(t, dir, "child.sh", `
trap 'date +%s%N >> "$D/term"' TERM
echo $$ > "$D/pid"
while :; do sleep 30 & wait $!; done
`)
	p := startDlock(t, "dlock run", []string{"D=" + dir}, "run", "--url", url, "--key", key,
		"--ttl", ttl.String(), "--grace", grace.String(), "--", child)
	waitFor(t, 20*time.Second, "the command to start", func() bool { return readFile(t, filepath.Join(dir, "pid")) != "" })
	pid, _ := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(dir, "pid"))))
	killGroupAtEnd(t, pid)

	ctx := t.Context()
	keys, err := rdb.Keys(ctx, "*{"+key+"}").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("the lock's Redis key: %v, %v; want one", keys, err)
	}
	// Watch the key on the server, directly: lastSeen is the last time
	// it was there.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watched := make(chan time.Time, 1)
	go func() {
		var lastSeen time.Time
		defer func() { watched <- lastSeen }()
		for watchCtx.Err() == nil {
			now := time.Now()
			n, err := rdb.Exists(watchCtx, keys[0]).Result()
			if err == nil && n == 0 {
				return
			}
			if err == nil {
				lastSeen = now
			}
			time.Sleep(2 * time.Millisecond) // polling: the expiry has no event
		}
	}()

	px.Partition()
	code := p.wait(t, 20*time.Second)
	exited := time.Now()
	var lastSeen time.Time
	select {
	case lastSeen = <-watched:
	case <-time.After(10 * time.Second):
		stopWatch()
		lastSeen = <-watched
		t.Errorf("the key still exists on the server %v after the partition", 10*time.Second)
	}

	if code != exitLeaseLost {
		t.Errorf("exit status %d, want %d (lease lost)", code, exitLeaseLost)
	}
	terms := strings.Fields(readFile(t, filepath.Join(dir, "term")))
	if len(terms) == 0 {
		t.Fatalf("the command never got SIGTERM; stderr:\n%s", p.stderr.String())
	}
	ns, _ := strconv.ParseInt(terms[0], 10, 64)
	termAt := time.Unix(0, ns)
	if !termAt.Before(lastSeen) {
		t.Errorf("the command got SIGTERM at %v, after the key was last seen on the server at %v",
			termAt.Format("15:04:05.000"), lastSeen.Format("15:04:05.000"))
	}
	if !exited.After(termAt) {
		t.Errorf("dlock run exited at %v, before the command got SIGTERM at %v", exited, termAt)
	}
	if !processGone(pid) {
		t.Errorf("the command (pid %d), which ignores SIGTERM, still runs", pid)
	}
	for _, want := range []string{"lease on", "lost", "SIGKILL"} {
		if !strings.Contains(p.stderr.String(), want) {
			t.Errorf("stderr does not say %q:\n%s", want, p.stderr.String())
		}
	}
}

// electLog is the shared log that the commands of TestRedisElect write.
type electEntry struct {
	kind  string // start, stop, OVERLAP
	fence uint64
	pid   int
	at    time.Time
}

func readElectLog(t *testing.T, path string) []electEntry {
	t.Helper()
	var es []electEntry
	for _, line := range strings.Split(strings.TrimSpace(readFile(t, path)), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		var e electEntry
		e.kind = f[0]
		e.fence, _ = strconv.ParseUint(f[1], 10, 64)
		e.pid, _ = strconv.Atoi(f[2])
		ns, _ := strconv.ParseInt(f[3], 10, 64)
		e.at = time.Unix(0, ns)
		es = append(es, e)
	}
	return es
}

func starts(es []electEntry) []electEntry {
	var s []electEntry
	for _, e := range es {
		if e.kind == "start" {
			s = append(s, e)
		}
	}
	return s
}

// parentPID returns the parent of pid, from /proc.
func parentPID(t *testing.T, pid int) int {
	t.Helper()
	stat := readFile(t, "/proc/"+strconv.Itoa(pid)+"/stat")
	i := strings.LastIndexByte(stat, ')')
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		t.Fatalf("cannot read the parent of %d from %q", pid, stat)
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// TestRedisElect runs three dlock elect processes: one command at a time;
// a partitioned leader's command is terminated and a standby takes over;
// after kill -9 of the leader's dlock, its command dies with it and a
// standby's command starts within TTL + 1s; every takeover brings a larger
// DLOCK_FENCE.
func TestRedisElect(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs Linux")
	}
	t.Parallel()
	srv := redistest.Shared(t)
	px := redistest.NewProxy(t, srv.Addr())
	dir := t.TempDir()
	key := uniqueKey(t)
	const ttl = time.Second
	logPath := filepath.Join(dir, "log")
	// The marker, a symbolic link to the running command's pid, is made
	// atomically: a second command running at once finds it, and the
	// process it names alive. (A command killed with SIGKILL at the
	// lease's deadline, before its trap ran, leaves the marker behind.)
	child := script(t, dir, "child.sh", `
trap 'echo "stop $DLOCK_FENCE $$ $(date +%s%N)" >> "$D/log"; rm -f "$D/running"; exit 0' TERM
if ! ln -s $$ "$D/running" 2>/dev/null; then
	if kill -0 "$(readlink "$D/running")" 2>/dev/null; then echo "OVERLAP $DLOCK_FENCE $$ $(date +%s%N)" >> "$D/log"; fi
	ln -sfn $$ "$D/running"
fi
echo "start $DLOCK_FENCE $$ $(date +%s%N)" >> "$D/log"
while :; do sleep 30 & wait $!; done
`)
	elect := func(name, url string) *proc {
		return startDlock(t, name, []string{"D=" + dir}, "elect", "--url", url, "--key", key,
			"--ttl", ttl.String(), "--grace", "1s", "--owner", name, "--", child)
	}
	waitStarts := func(n int, what string) []electEntry {
		t.Helper()
		waitFor(t, 20*time.Second, what, func() bool { return len(starts(readElectLog(t, logPath))) >= n })
		s := starts(readElectLog(t, logPath))
		killGroupAtEnd(t, s[n-1].pid)
		return s
	}

	// e1 reaches Redis through the proxy, with a wide drift allowance so
	// that its command's SIGTERM handler runs before the server frees the
	// key even on a loaded machine.
	e1 := elect("e1", "redis://"+px.Addr()+"/?drift=300ms")
	waitStarts(1, "e1's command to start")
	e2 := elect("e2", "redis://"+srv.Addr())
	e3 := elect("e3", "redis://"+srv.Addr())
	for _, p := range []*proc{e2, e3} {
		waitFor(t, 20*time.Second, p.name+" to see leader e1", func() bool {
			return strings.Contains(p.stderr.String(), "leader is e1 (fence ")
		})
	}
	if got := starts(readElectLog(t, logPath)); len(got) != 1 {
		t.Fatalf("%d commands started with e1 leading, want 1", len(got))
	}

	// Partition e1: its command is terminated, another takes over.
	cut := time.Now()
	px.Partition()
	s := waitStarts(2, "a standby's command to start after e1's partition")
	if d := s[1].at.Sub(cut); d > ttl+time.Second {
		t.Errorf("takeover after the partition took %v, want at most TTL+1s", d)
	}
	if !strings.Contains(e1.stderr.String(), `lease on "`+key+`" lost: `) {
		t.Errorf("e1 does not report its lease lost:\n%s", e1.stderr.String())
	}
	px.Heal()

	// kill -9 the leader's dlock: its command dies with it, a standby's
	// starts within TTL + 1s. The command's parent is its guardian, whose
	// parent is dlock.
	leaderPID := parentPID(t, parentPID(t, s[1].pid))
	var leader *proc
	var rest []*proc
	for _, p := range []*proc{e1, e2, e3} {
		if p.cmd.Process.Pid == leaderPID {
			leader = p
		} else {
			rest = append(rest, p)
		}
	}
	if leader == nil {
		t.Fatalf("the command %d is not a child of any dlock elect (parent %d)", s[1].pid, leaderPID)
	}
	killed := time.Now()
	leader.cmd.Process.Kill()
	waitFor(t, 5*time.Second, "the command to die with its dlock", func() bool {
		return processGone(leaderPID) && processGone(s[1].pid)
	})
	os.Remove(filepath.Join(dir, "running")) // killed, it could not clean up
	leader.wait(t, 10*time.Second)
	s = waitStarts(3, "a standby's command to start after kill -9 of the leader")
	if d := s[2].at.Sub(killed); d > ttl+time.Second {
		t.Errorf("takeover after kill -9 took %v, want at most TTL+1s", d)
	}

	// SIGTERM to the rest: the leader's command exits 0 on SIGTERM, and
	// dlock elect with it; the standby exits 128+15.
	leaderPID = parentPID(t, parentPID(t, s[2].pid))
	for _, p := range rest {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range rest {
		want := 128 + int(syscall.SIGTERM)
		if p.cmd.Process.Pid == leaderPID {
			want = 0
		}
		if code := p.wait(t, 15*time.Second); code != want {
			t.Errorf("%s: exit status %d after SIGTERM, want %d; stderr:\n%s", p.name, code, want, p.stderr.String())
		}
	}

	log := readElectLog(t, logPath)
	for _, e := range log {
		if e.kind == "OVERLAP" {
			t.Errorf("two commands ran at once: fence %d started while another ran", e.fence)
		}
	}
	s = starts(log)
	if len(s) != 3 {
		t.Errorf("%d commands started, want 3", len(s))
	}
	for i := 1; i < len(s); i++ {
		if s[i].fence <= s[i-1].fence {
			t.Errorf("takeover %d: fence %d is not larger than %d", i, s[i].fence, s[i-1].fence)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", readFile(t, logPath))
	}
}

// TestRedisErrors: an unreachable server and refused credentials exit with
// the unavailable status, a bad URL with the usage status, and no message
// shows the password.
func TestRedisErrors(t *testing.T) {
	t.Parallel()
	srv := redistest.StartACL(t)
	const pw = "pw-s3cret"
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"WrongPassword", []string{"run", "--url", "redis://dlock:" + pw + "@" + srv.Addr(), "--key", "k", "--", "true"}, exitUnavailable},
		{"WrongPasswordStatus", []string{"status", "--url", "redis://dlock:" + pw + "@" + srv.Addr(), "k"}, exitUnavailable},
		{"NoScriptPermission", []string{"run", "--url", "redis://" + redistest.RestrictedUser.Username + ":" + redistest.RestrictedUser.Password + "@" + srv.Addr(), "--key", "k", "--", "true"}, exitUnavailable},
		{"UnknownParameter", []string{"run", "--url", "redis://dlock:" + pw + "@" + srv.Addr() + "/?colour=blue", "--key", "k", "--", "true"}, exitUsage},
		{"Unreachable", []string{"run", "--url", "redis://dlock:" + pw + "@127.0.0.1:1", "--key", "k", "--", "true"}, exitUnavailable},
		{"UnreachableElect", []string{"elect", "--url", "redis://dlock:" + pw + "@127.0.0.1:1", "--key", "k", "--", "true"}, exitUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startDlock(t, "dlock", nil, tc.args...)
			if code := p.wait(t, 20*time.Second); code != tc.want {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, tc.want, p.stderr.String())
			}
			if p.stderr.String() == "" {
				t.Errorf("no message on stderr")
			}
			if strings.Contains(p.stdout.String()+p.stderr.String(), pw) {
				t.Errorf("the password was printed:\n%s", p.stderr.String())
			}
			t.Logf("stderr: %s", p.stderr.String())
		})
	}
}

// TestRedisElectCommandExits: a command that exits on its own ends its
// dlock elect with its status, and releases the key at once, so that a
// standby takes over well within the TTL.
func TestRedisElectCommandExits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := redisEnv(t, dir)
	key := uniqueKey(t)
	const ttl = 10 * time.Second
	child := script(t, dir, "child.sh", `echo "$DLOCK_FENCE" >> "$D/fences"; sleep 0.2; exit 5`)
	start := time.Now()
	a := startDlock(t, "A", env, "elect", "--key", key, "--ttl", ttl.String(), "--", child)
	b := startDlock(t, "B", env, "elect", "--key", key, "--ttl", ttl.String(), "--", child)
	for _, p := range []*proc{a, b} {
		if code := p.wait(t, 20*time.Second); code != 5 {
			t.Errorf("%s: exit status %d, want the command's 5; stderr:\n%s", p.name, code, p.stderr.String())
		}
	}
	if d := time.Since(start); d > ttl/2 {
		t.Errorf("both commands took %v: the key was not released when the first exited", d)
	}
	fs := strings.Fields(readFile(t, filepath.Join(dir, "fences")))
	if len(fs) != 2 {
		t.Fatalf("commands ran %d times, want 2", len(fs))
	}
	f0, _ := strconv.ParseUint(fs[0], 10, 64)
	f1, _ := strconv.ParseUint(fs[1], 10, 64)
	if f1 <= f0 {
		t.Errorf("the second leader's fence %d is not larger than the first's, %d", f1, f0)
	}
}
