package main

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
)

// clockWrites reads the times, in Unix nanoseconds, that a job wrote to a
// file one per line.
func clockWrites(t *testing.T, path string) []time.Time {
	t.Helper()
	var ts []time.Time
	for _, line := range strings.Fields(readFile(t, path)) {
		ns, err := strconv.ParseInt(line, 10, 64)
		if err != nil {
			continue // a line cut by SIGKILL
		}
		ts = append(ts, time.Unix(0, ns))
	}
	return ts
}

// TestRedisStoppedGuardianNoOverlap: the guardian is stopped (SIGSTOP, as
// a debugger attaching to it would) and then Redis is paused for 3s, so
// renewal fails. dlock itself must kill the guardian and the job's tree by
// the lease's deadline, with a cgroup and without: the job and a daemon it
// started (setsid), which ignore SIGTERM and write the time every 10ms,
// must write nothing after the next holder's job started (both jobs ran
// together for about 2s before).
func TestRedisStoppedGuardianNoOverlap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, env string }{
		{"Cgroup", ""},
		{"Scan", noCgroupEnv + "=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.StartProcess(t, nil)
			rdb := srv.Client(t)
			dir := t.TempDir()
			key := uniqueKey(t)
			url := "redis://" + srv.Addr() + "/?drift=100ms"
			env := []string{"D=" + dir, tc.env}
			job := script(t, dir, "job.sh", `
trap "" TERM
setsid sh -c 'trap "" TERM; echo $$ > "$D/daemon"; while :; do date +%s%N >> "$D/first"; sleep 0.01; done' &
echo $$ > "$D/main"
while :; do date +%s%N >> "$D/first"; sleep 0.01; done
`)
			first := startDlock(t, "first", env, "run", "--url", url, "--key", key, "--ttl", "1s", "--verbose", "--", job)
			waitFor(t, 20*time.Second, "the first job and its daemon to write", func() bool {
				// The daemon writes to "first" too, maybe before the job wrote "main".
				return readFile(t, filepath.Join(dir, "first")) != "" && readFile(t, filepath.Join(dir, "daemon")) != "" &&
					readFile(t, filepath.Join(dir, "main")) != ""
			})
			pids := readPIDs(t, dir, "main", "daemon")
			guardian := parentPID(t, pids[0])
			if guardian == first.cmd.Process.Pid {
				t.Fatal("the job runs without a guardian")
			}
			second := startDlock(t, "second", env, "run", "--url", url, "--key", key, "--wait", "60s", "--",
				"sh", "-c", `while :; do date +%s%N >> "$D/second"; sleep 0.01; done`)
			waitFor(t, 20*time.Second, "the second dlock run to wait", func() bool {
				return strings.Contains(second.stderr.String(), "is busy")
			})

			if err := syscall.Kill(guardian, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { syscall.Kill(guardian, syscall.SIGCONT) })
			resume := pauseRedis(t, redisPID(t, rdb))
			time.Sleep(3 * time.Second) // the pause under test; the lease's TTL is 1s
			resume()
			waitFor(t, 20*time.Second, "the second job to write", func() bool { return readFile(t, filepath.Join(dir, "second")) != "" })
			time.Sleep(200 * time.Millisecond) // room for the first job to overlap, if it still runs
			second.cmd.Process.Signal(syscall.SIGTERM)
			second.wait(t, 20*time.Second)

			firstWrites, secondWrites := clockWrites(t, filepath.Join(dir, "first")), clockWrites(t, filepath.Join(dir, "second"))
			if len(firstWrites) == 0 || len(secondWrites) == 0 {
				t.Fatalf("writes: first %d, second %d", len(firstWrites), len(secondWrites))
			}
			last, start := slices.MaxFunc(firstWrites, time.Time.Compare), secondWrites[0]
			if !last.Before(start) {
				t.Errorf("the first job wrote until %v, after the second job started at %v: they ran together for %v",
					last.Format("15:04:05.000"), start.Format("15:04:05.000"), last.Sub(start))
			}
			if !allGone(pids) {
				t.Errorf("the first job %v still runs", pids)
			}
			if code := first.wait(t, 20*time.Second); code != exitLeaseLost {
				t.Errorf("first: exit status %d, want %d (lease lost)", code, exitLeaseLost)
			}
			if m := cgroupRE.FindStringSubmatch(first.stderr.String()); m != nil {
				if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
					t.Errorf("the first job's cgroup %s is left after dlock run exited (%v)", m[1], err)
				}
			}
			if !strings.Contains(first.stderr.String(), "dlock kills the guardian") {
				t.Errorf("first's stderr does not say that dlock killed the guardian:\n%s", first.stderr.String())
			}
		})
	}
}
