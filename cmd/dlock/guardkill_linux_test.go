package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
)

// TestRedisGuardianKill9ContainsTree: the guardian itself is killed with
// SIGKILL while the job runs with a daemon that called setsid. The job
// dies with its guardian (parent-death signal); the daemon, no longer
// anyone's descendant but dlock's, must be gone too by the time dlock run
// has released the key and exited (it escaped before).
func TestRedisGuardianKill9ContainsTree(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	rdb := srv.Client(t)
	dir := t.TempDir()
	key := uniqueKey(t)
	job := script(t, dir, "job.sh", `
setsid sh -c 'echo $$ > "$D/daemon"; exec sleep 600' &
while [ ! -s "$D/daemon" ]; do sleep 0.01; done
echo $$ > "$D/pid"
while :; do sleep 0.05; done
`)
	p := startDlock(t, "run", []string{"D=" + dir}, "run", "--url", "redis://"+srv.Addr(), "--key", key, "--verbose", "--", job)
	waitFor(t, 20*time.Second, "the job and its daemon to start", func() bool { return readFile(t, filepath.Join(dir, "pid")) != "" })
	pids := readPIDs(t, dir, "pid", "daemon")
	guardian := parentPID(t, pids[0])
	if guardian == p.cmd.Process.Pid {
		t.Fatal("the job runs without a guardian")
	}
	syscall.Kill(guardian, syscall.SIGKILL)
	if code := p.wait(t, 30*time.Second); code != 128+int(syscall.SIGKILL) {
		t.Errorf("exit status %d, want %d (the job was killed)", code, 128+int(syscall.SIGKILL))
	}
	if !allGone(pids) {
		t.Errorf("processes of the job %v still run after dlock run released the key and exited", pids)
	}
	if m := cgroupRE.FindStringSubmatch(p.stderr.String()); m != nil {
		if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
			t.Errorf("the job's cgroup %s is left after dlock run exited (%v)", m[1], err)
		}
	}
	if n, err := rdb.Exists(t.Context(), "dlock:{"+key+"}").Result(); err != nil || n != 0 {
		t.Errorf("the lock key exists after dlock run exited (%d, %v)", n, err)
	}
}
