package main

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
)

// TestRedisStoppedJobGetsSIGTERMBeforeDeadline: the job has stopped itself
// (SIGSTOP) and traps SIGTERM to clean up; Redis pauses writes, so the
// lease cannot be renewed. The SIGTERM sent before the deadline
// must reach the job's handler (a stopped process runs it only once
// continued, so SIGCONT follows it, as systemd sends it), with the cgroup
// and without one; before, the job stayed stopped until SIGKILL.
func TestRedisStoppedJobGetsSIGTERMBeforeDeadline(t *testing.T) {
	t.Parallel()
	srv := redistest.StartProcess(t, nil)
	rdb := srv.Client(t)
	for _, tc := range []struct {
		name, env string
		ttl       time.Duration
	}{
		{"Cgroup", "", 2 * time.Second},
		// SIGKILL goes out twice a scan of /proc before the deadline,
		// up to 400ms on a loaded machine with -race: at a TTL of 2s that
		// leaves the handler no time after the SIGTERM.
		{"Scan", noCgroupEnv + "=1", 6 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			key := uniqueKey(t)
			job := script(t, dir, "job.sh", `
trap 'echo cleaned > "$D/cleaned"; exit 0' TERM
echo $$ > "$D/main"
kill -STOP $$
while :; do sleep 0.05; done
`)
			p := startDlock(t, "dlock run", []string{"D=" + dir, tc.env}, "run", "--url", "redis://"+srv.Addr(), "--key", key, "--ttl", tc.ttl.String(), "--", job)
			waitFor(t, 20*time.Second, "the job to start", func() bool { return readFile(t, filepath.Join(dir, "main")) != "" })
			pids := readPIDs(t, dir, "main")
			waitFor(t, 10*time.Second, "the job to stop itself", func() bool {
				stat := readFile(t, "/proc/"+strconv.Itoa(pids[0])+"/stat")
				i := strings.LastIndexByte(stat, ')')
				return i > 0 && strings.HasPrefix(stat[i+1:], " T")
			})
			ctx := t.Context()
			if err := rdb.Do(ctx, "CLIENT", "PAUSE", "10000", "WRITE").Err(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rdb.Do(context.Background(), "CLIENT", "UNPAUSE") }) // t's context is done by then
			if code := p.wait(t, 20*time.Second); code != exitLeaseLost {
				t.Errorf("exit status %d, want %d (lease lost)", code, exitLeaseLost)
			}
			if got := strings.TrimSpace(readFile(t, filepath.Join(dir, "cleaned"))); got != "cleaned" {
				t.Errorf("the stopped job's SIGTERM handler did not run before the deadline's SIGKILL (cleaned: %q); stderr:\n%s", got, p.stderr.String())
			}
		})
	}
}
