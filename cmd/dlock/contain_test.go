//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dlock-go/dlock/internal/redistest"
)

// These tests check that a job never outlives its lease (issue 11): the
// kill schedule tied to the lease's deadline, and the guardian that
// contains the job's process tree. They need /proc, hence Linux.

// redisPID returns the pid of the redis-server behind rdb, for SIGSTOP.
func redisPID(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	info, err := rdb.Info(t.Context(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
	}
	t.Fatalf("no process_id in INFO server:\n%s", info)
	return 0
}

// pauseRedis stops the server with SIGSTOP: connections stay open and
// nothing is answered, as in a stopped VM. It resumes when t ends, if not
// before.
func pauseRedis(t *testing.T, pid int) (resume func()) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resume = func() { syscall.Kill(pid, syscall.SIGCONT) }
	t.Cleanup(resume)
	return resume
}

// readPIDs reads the pids that a job's processes wrote, one per file.
func readPIDs(t *testing.T, dir string, names ...string) []int {
	t.Helper()
	var pids []int
	for _, n := range names {
		pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(dir, n))))
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		pids = append(pids, pid)
		killAtEnd(t, pid)
	}
	return pids
}

// killAtEnd makes sure pid is gone when t ends, whatever the test did.
func killAtEnd(t *testing.T, pid int) {
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
}

func allGone(pids []int) bool {
	for _, pid := range pids {
		if !processGone(pid) {
			return false
		}
	}
	return true
}

// TestRedisPausedServerKillsTreeBeforeExpiry: a job that ignores SIGTERM,
// with a background process that ignores it too, under dlock run --ttl 2s
// --grace 10s; Redis is paused (SIGSTOP). The job's whole tree must be gone
// before the key's server-side expiry, not 10s after the loss, and a second
// dlock run --wait on the key starts its job only after both.
func TestRedisPausedServerKillsTreeBeforeExpiry(t *testing.T) {
	t.Parallel()
	srv := redistest.StartProcess(t, nil)
	rdb := srv.Client(t)
	dir := t.TempDir()
	key := uniqueKey(t)
	// A wider drift allowance than the default 22ms keeps the scheduling
	// of a loaded test machine from deciding the test; the schedule under
	// test is relative to the local deadline either way.
	url := "redis://" + srv.Addr() + "/?drift=200ms"
	env := []string{"D=" + dir}
	job := script(t, dir, "job.sh", `
trap "" TERM
sh -c 'echo $$ > "$D/bg"; exec sleep 600' &
echo $$ > "$D/main"
while :; do sleep 1; done
`)
	first := startDlock(t, "first", env, "run", "--url", url, "--key", key, "--ttl", "2s", "--grace", "10s", "--", job)
	waitFor(t, 20*time.Second, "the job and its background process to start", func() bool {
		return readFile(t, filepath.Join(dir, "main")) != "" && readFile(t, filepath.Join(dir, "bg")) != ""
	})
	pids := readPIDs(t, dir, "main", "bg")
	second := startDlock(t, "second", env, "run", "--url", url, "--key", key, "--wait", "60s", "--",
		"sh", "-c", `date +%s%N > "$D/second"`)
	waitFor(t, 20*time.Second, "the second dlock run to wait", func() bool {
		return strings.Contains(second.stderr.String(), "is busy")
	})

	// The server's expiry is at least PTTL after the moment the PTTL was
	// sent; renewals after it can only push it later.
	ctx := t.Context()
	sent := time.Now()
	pttl, err := rdb.PTTL(ctx, "dlock:{"+key+"}").Result()
	if err != nil || pttl <= 0 {
		keys, _ := rdb.Keys(ctx, "*{"+key+"}*").Result()
		t.Fatalf("PTTL of the lock key: %v, %v (keys: %v)", pttl, err, keys)
	}
	expiry := sent.Add(pttl)
	resume := pauseRedis(t, redisPID(t, rdb))
	paused := time.Now()

	deadline := time.Now().Add(10 * time.Second)
	for !allGone(pids) && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond) // other processes' deaths have no event
	}
	gone := time.Now()
	if !allGone(pids) {
		t.Fatalf("the job's processes %v still run %v after Redis was paused", pids, gone.Sub(paused))
	}
	if !gone.Before(expiry) {
		t.Errorf("the job's tree was gone at %v, %v after the key's server-side expiry at the latest",
			gone.Format("15:04:05.000"), gone.Sub(expiry))
	}
	t.Logf("tree gone %v after the pause, %v before the server-side expiry", gone.Sub(paused), expiry.Sub(gone))

	if code := first.wait(t, 20*time.Second); code != exitLeaseLost {
		t.Errorf("first: exit status %d, want %d (lease lost)", code, exitLeaseLost)
	}
	resume()
	if code := second.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("second: exit status %d, want 0; stderr:\n%s", code, second.stderr.String())
	}
	ns, _ := strconv.ParseInt(strings.TrimSpace(readFile(t, filepath.Join(dir, "second"))), 10, 64)
	started := time.Unix(0, ns)
	if !started.After(gone) || !started.After(expiry) {
		t.Errorf("the second job started at %v; the first job's tree was gone at %v, the key expired at %v",
			started.Format("15:04:05.000"), gone.Format("15:04:05.000"), expiry.Format("15:04:05.000"))
	}
	for _, want := range []string{"--grace 10s is more than a TTL of 2s allows", "SIGTERM", "SIGKILL"} {
		if !strings.Contains(first.stderr.String(), want) {
			t.Errorf("first's stderr does not say %q:\n%s", want, first.stderr.String())
		}
	}
}

// TestRedisElectKill9ContainsTree: kill -9 of the leading dlock elect
// leaves no process of its job's tree alive 200ms later, be it a shell
// with background children or a daemon that double-forked and called
// setsid; a standby takes over within TTL+1s with a larger fence.
func TestRedisElectKill9ContainsTree(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		job  string
		want int // processes under dlock: the guardian and the job's (a shell and two sleeps)
	}{
		{"BackgroundChildren", `sleep 600 & sleep 600; wait`, 4},
		{"DoubleForkedDaemon", `(setsid sh -c 'echo $$ > "$D/daemon"; exec sleep 600' &); sleep 600`, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			env := redisEnv(t, dir)
			key := uniqueKey(t)
			const ttl = time.Second
			elect := func(name string) *proc {
				return startDlock(t, name, env, "elect", "--key", key, "--ttl", ttl.String(), "--owner", name, "--", "sh", "-c", tc.job)
			}
			a := elect("A")
			waitFor(t, 20*time.Second, "A to start its job", func() bool { return strings.Contains(a.stderr.String(), "started (pid") })
			b := elect("B")
			waitFor(t, 20*time.Second, "B to see leader A", func() bool { return strings.Contains(b.stderr.String(), "leader is A") })
			var tree []procInfo
			waitFor(t, 20*time.Second, "the job's processes to start", func() bool {
				tree = descendants(a.cmd.Process.Pid)
				daemon, _ := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(dir, "daemon"))))
				if strings.Contains(tc.job, "daemon") && !slices.ContainsFunc(tree, func(p procInfo) bool { return p.pid == daemon }) {
					return false
				}
				return len(tree) >= tc.want
			})
			// The guardian is dlock's own process; the job's tree is below it.
			var pids, guardians []int
			for _, p := range tree {
				killAtEnd(t, p.pid)
				if p.ppid == a.cmd.Process.Pid {
					guardians = append(guardians, p.pid)
				} else {
					pids = append(pids, p.pid)
				}
			}

			killed := time.Now()
			a.cmd.Process.Kill()
			for !allGone(pids) && time.Since(killed) < 200*time.Millisecond {
				time.Sleep(2 * time.Millisecond) // other processes' deaths have no event
			}
			if !allGone(pids) {
				var alive []int
				for _, pid := range pids {
					if !processGone(pid) {
						alive = append(alive, pid)
					}
				}
				t.Errorf("processes %v of the job's tree %v still run 200ms after kill -9 of dlock elect", alive, pids)
			}
			// The guardian leaves once it has reaped them all.
			waitFor(t, 5*time.Second, "the guardian to exit", func() bool { return allGone(guardians) })
			waitFor(t, ttl+time.Second, "B to take over within TTL+1s", func() bool {
				return strings.Contains(b.stderr.String(), "started (pid")
			})
			fs := fences(t, a.stderr.String()+b.stderr.String())
			if len(fs) < 2 {
				t.Fatalf("fences %v: want A's and B's", fs)
			}
			if last := fs[len(fs)-1]; last <= fs[0] {
				t.Errorf("B's fence %d is not larger than A's %d", last, fs[0])
			}
			b.cmd.Process.Signal(syscall.SIGTERM)
			b.wait(t, 20*time.Second)
		})
	}
}

// processState returns the state letter of pid from /proc (R, S, T...).
func processState(t *testing.T, pid int) string {
	t.Helper()
	stat := readFile(t, "/proc/"+strconv.Itoa(pid)+"/stat")
	i := strings.LastIndexByte(stat, ')')
	if i < 0 || len(stat) < i+3 {
		return ""
	}
	return stat[i+2 : i+3]
}

// TestRedisRunCtrlZ: SIGTSTP (Ctrl-Z) does not stop dlock run, which keeps
// renewing while its job runs: a second dlock run waiting more than twice
// the TTL finds the key busy all along, and never runs its job beside the
// first.
func TestRedisRunCtrlZ(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := redisEnv(t, dir)
	key := uniqueKey(t)
	job := script(t, dir, "job.sh", `
echo $$ > "$D/first"
trap 'exit 0' TERM
while :; do sleep 0.05; done
`)
	// A TTL of 2s, not less: on a loaded machine a shorter one can be
	// lost for reasons that have nothing to do with Ctrl-Z.
	first := startDlock(t, "first", env, "run", "--key", key, "--ttl", "2s", "--", job)
	waitFor(t, 20*time.Second, "the first job to start", func() bool { return readFile(t, filepath.Join(dir, "first")) != "" })
	readPIDs(t, dir, "first")
	first.cmd.Process.Signal(syscall.SIGTSTP)
	waitFor(t, 10*time.Second, "dlock run to stop or report the SIGTSTP", func() bool {
		return strings.Contains(first.stderr.String(), "ignoring SIGTSTP") || processState(t, first.cmd.Process.Pid) == "T"
	})
	if st := processState(t, first.cmd.Process.Pid); st == "T" {
		t.Fatalf("dlock run is stopped (state %s) after SIGTSTP", st)
	}
	second := startDlock(t, "second", env, "run", "--key", key, "--wait", "4500ms", "--",
		"sh", "-c", `echo second >> "$D/second"`)
	if code := second.wait(t, 20*time.Second); code != exitBusy {
		t.Errorf("second: exit status %d, want %d (busy): the first dlock run stopped renewing", code, exitBusy)
	}
	if got := readFile(t, filepath.Join(dir, "second")); got != "" {
		t.Errorf("the second job ran while the first held the key")
	}
	first.cmd.Process.Signal(syscall.SIGTERM)
	if code := first.wait(t, 20*time.Second); code != 0 {
		t.Errorf("first: exit status %d after SIGTERM, want the job's 0", code)
	}
}

// TestRedisRunBrokenStderr: dlock run's stderr is a pipe nobody reads
// ({ dlock run ... 2>&1; } | true). The first log line must not kill dlock
// with SIGPIPE: it still clears what the job left, releases the key at
// once, and exits with the job's status.
func TestRedisRunBrokenStderr(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	rdb := srv.Client(t)
	dir := t.TempDir()
	key := uniqueKey(t)
	job := script(t, dir, "job.sh", `
sh -c 'echo $$ > "$D/left"; exec sleep 600' &
while [ ! -s "$D/left" ]; do sleep 0.01; done
exit 3
`)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // nobody reads: the first write gets EPIPE, or SIGPIPE
	cmd := exec.Command(dlockBin, "run", "--url", "redis://"+srv.Addr(), "--key", key, "--ttl", "10s", "--", job)
	cmd.Env = append(os.Environ(), "D="+dir, "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	cmd.Stderr = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("dlock run still runs after 20s")
	}
	pids := readPIDs(t, dir, "left")
	if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() || ws.ExitStatus() != 3 {
		t.Errorf("dlock run ended with %v, want exit status 3 (the job's)", cmd.ProcessState)
	}
	if !allGone(pids) {
		t.Errorf("the process the job left (pid %d) still runs after dlock run exited", pids[0])
	}
	if n, err := rdb.Exists(t.Context(), "dlock:{"+key+"}").Result(); err != nil || n != 0 {
		t.Errorf("the lock key exists after dlock run exited (%d, %v): it was not released", n, err)
	}
}

// TestRedisElectStopSignalDuringLossStop: a SIGTERM that reaches dlock
// elect while it is stopping its job after renewal failed ends it (128+15)
// once the job is gone; it does not campaign again and restart the job,
// even though the backend is back.
func TestRedisElectStopSignalDuringLossStop(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	px := redistest.NewProxy(t, srv.Addr())
	dir := t.TempDir()
	key := uniqueKey(t)
	job := script(t, dir, "job.sh", `
echo $$ >> "$D/starts"
trap 'echo term >> "$D/term"' TERM
while :; do sleep 0.05; done
`)
	e := startDlock(t, "elect", []string{"D=" + dir}, "elect", "--url", "redis://"+px.Addr(), "--key", key, "--ttl", "2s", "--", job)
	waitFor(t, 20*time.Second, "the job to start", func() bool { return readFile(t, filepath.Join(dir, "starts")) != "" })
	readPIDs(t, dir, "starts")
	px.Partition()
	waitFor(t, 20*time.Second, "the job to get SIGTERM after renewal failed", func() bool {
		return readFile(t, filepath.Join(dir, "term")) != ""
	})
	e.cmd.Process.Signal(syscall.SIGTERM)
	px.Heal()
	if code := e.wait(t, 20*time.Second); code != 128+int(syscall.SIGTERM) {
		t.Errorf("exit status %d, want %d", code, 128+int(syscall.SIGTERM))
	}
	if starts := strings.Fields(readFile(t, filepath.Join(dir, "starts"))); len(starts) != 1 {
		t.Errorf("the job started %d times, want once: dlock elect campaigned again after SIGTERM", len(starts))
	}
}

// TestRedisElectJobExitsThenLoss: the job exits on its own and leaves a
// process that ignores SIGTERM; while dlock elect clears it, renewal fails.
// The leftover is killed before the lease's deadline, and dlock elect exits
// (76: the lease was lost before the leftovers were cleared) without
// restarting the job.
func TestRedisElectJobExitsThenLoss(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	px := redistest.NewProxy(t, srv.Addr())
	dir := t.TempDir()
	key := uniqueKey(t)
	job := script(t, dir, "job.sh", `
echo $$ >> "$D/starts"
sh -c 'trap "" TERM; echo $$ > "$D/left"; exec sleep 600' &
while [ ! -s "$D/left" ]; do sleep 0.01; done
exit 0
`)
	e := startDlock(t, "elect", []string{"D=" + dir}, "elect", "--url", "redis://"+px.Addr(), "--key", key,
		"--ttl", "2s", "--grace", "30s", "--", job)
	waitFor(t, 20*time.Second, "dlock elect to clear the job's leftovers", func() bool {
		return strings.Contains(e.stderr.String(), "left processes")
	})
	pids := readPIDs(t, dir, "left")
	px.Partition()
	cut := time.Now()
	if code := e.wait(t, 20*time.Second); code != exitLeaseLost {
		t.Errorf("exit status %d, want %d (lease lost while clearing)", code, exitLeaseLost)
	}
	px.Heal()
	if !allGone(pids) {
		t.Errorf("the leftover (pid %d) still runs", pids[0])
	}
	if d := time.Since(cut); d > 10*time.Second {
		t.Errorf("dlock elect took %v after the partition; the leftover should die by the deadline, not after --grace 30s", d)
	}
	if starts := strings.Fields(readFile(t, filepath.Join(dir, "starts"))); len(starts) != 1 {
		t.Errorf("the job started %d times, want once", len(starts))
	}
}

// TestRedisStoppedDlockKillsTreeBeforeExpiry: dlock run itself is stopped
// (SIGSTOP: it cannot renew, nor act). Its guardian still kills the job's
// whole tree before the key's server-side expiry; resumed, dlock run
// reports the loss with status 76.
func TestRedisStoppedDlockKillsTreeBeforeExpiry(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	rdb := srv.Client(t)
	dir := t.TempDir()
	key := uniqueKey(t)
	job := script(t, dir, "job.sh", `
trap "" TERM
sh -c 'echo $$ > "$D/bg"; exec sleep 600' &
echo $$ > "$D/main"
while :; do sleep 1; done
`)
	p := startDlock(t, "dlock run", []string{"D=" + dir}, "run", "--url", "redis://"+srv.Addr()+"/?drift=200ms",
		"--key", key, "--ttl", "2s", "--", job)
	waitFor(t, 20*time.Second, "the job and its background process to start", func() bool {
		return readFile(t, filepath.Join(dir, "main")) != "" && readFile(t, filepath.Join(dir, "bg")) != ""
	})
	pids := readPIDs(t, dir, "main", "bg")
	sent := time.Now()
	pttl, err := rdb.PTTL(t.Context(), "dlock:{"+key+"}").Result()
	if err != nil || pttl <= 0 {
		t.Fatalf("PTTL of the lock key: %v, %v", pttl, err)
	}
	expiry := sent.Add(pttl)
	p.cmd.Process.Signal(syscall.SIGSTOP)
	t.Cleanup(func() { p.cmd.Process.Signal(syscall.SIGCONT) })
	deadline := time.Now().Add(10 * time.Second)
	for !allGone(pids) && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond) // other processes' deaths have no event
	}
	gone := time.Now()
	if !allGone(pids) {
		t.Fatalf("the job's processes %v still run 10s after dlock run was stopped", pids)
	}
	if !gone.Before(expiry) {
		t.Errorf("the job's tree was gone %v after the key's server-side expiry", gone.Sub(expiry))
	}
	p.cmd.Process.Signal(syscall.SIGCONT)
	if code := p.wait(t, 20*time.Second); code != exitLeaseLost {
		t.Errorf("exit status %d, want %d (lease lost)", code, exitLeaseLost)
	}
}
