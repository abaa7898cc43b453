//go:build linux

package main

import (
	"path/filepath"
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
