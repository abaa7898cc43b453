package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunBothKilledNextRunSweepsCgroup: dlock run and its guardian are
// both killed with SIGKILL; the job dies with its guardian, but a daemon
// it started (setsid) lives on in the job's cgroup, and the cgroup stays.
// The next dlock run started in the same cgroup kills the daemon and
// removes the dead guardian's cgroup before it runs its own job; its own
// cgroup is gone when it exits. Not parallel: any guardian started
// meanwhile in this cgroup would sweep it first.
func TestRunBothKilledNextRunSweepsCgroup(t *testing.T) {
	dir := t.TempDir()
	job := script(t, dir, "job.sh", `
setsid sh -c 'echo $$ > "$D/daemon"; exec sleep 600' &
while [ ! -s "$D/daemon" ]; do sleep 0.01; done
echo $$ > "$D/pid"
exec sleep 600
`)
	p := startDlock(t, "first", []string{"D=" + dir}, "run", "--url", "mem://", "--key", "k", "--verbose", "--", job)
	waitFor(t, 20*time.Second, "the job and its daemon to start", func() bool { return readFile(t, filepath.Join(dir, "pid")) != "" })
	pids := readPIDs(t, dir, "pid", "daemon")
	cgroup := waitCgroup(t, p)
	guardian := parentPID(t, pids[0])
	// Stopped first, the guardian cannot see dlock's death (its control
	// pipe closing) and kill the tree before its own SIGKILL lands.
	syscall.Kill(guardian, syscall.SIGSTOP)
	syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
	syscall.Kill(guardian, syscall.SIGKILL)
	p.wait(t, 20*time.Second)
	waitFor(t, 20*time.Second, "the job to die with its guardian", func() bool { return processGone(pids[0]) })
	if processGone(pids[1]) {
		t.Fatal("the daemon died with dlock and the guardian: the test shows nothing")
	}
	if _, err := os.Stat(cgroup); err != nil {
		t.Fatalf("the dead guardian's cgroup is gone already: %v", err)
	}

	next := startDlock(t, "next", nil, "run", "--url", "mem://", "--key", "k", "--verbose", "--", "true")
	if code := next.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("next: exit status %d; stderr:\n%s", code, next.stderr.String())
	}
	if !processGone(pids[1]) {
		t.Error("the daemon left in the dead guardian's cgroup still runs after the next dlock run")
	}
	if _, err := os.Stat(cgroup); !os.IsNotExist(err) {
		t.Errorf("the dead guardian's cgroup %s is still there (%v)", cgroup, err)
	}
	if m := cgroupRE.FindStringSubmatch(next.stderr.String()); m == nil {
		t.Errorf("the next run used no cgroup:\n%s", next.stderr.String())
	} else if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("the next run's cgroup %s is left (%v)", m[1], err)
	}
	entries, _ := os.ReadDir(filepath.Dir(cgroup))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), cgroupPrefix) {
			t.Logf("job cgroup beside: %s", e.Name()) // of tests running at the same time
		}
	}
}

// TestRunKilledGuardianRemovesCgroup: dlock run is killed with SIGKILL; the
// guardian kills the job's tree and removes the job's cgroup.
func TestRunKilledGuardianRemovesCgroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// -v, short for --verbose, logs the containment too.
	p := startDlock(t, "run", []string{"D=" + dir}, "run", "--url", "mem://", "--key", "k", "-v", "--",
		"sh", "-c", `setsid sleep 600 & echo $! > "$D/daemon"; echo $$ > "$D/pid"; exec sleep 600`)
	waitFor(t, 20*time.Second, "the job to start", func() bool { return readFile(t, filepath.Join(dir, "pid")) != "" })
	pids := readPIDs(t, dir, "pid", "daemon")
	jobCg := waitCgroup(t, p)
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait(t, 20*time.Second)
	waitFor(t, 10*time.Second, "the job's cgroup to be removed", func() bool {
		_, err := os.Stat(jobCg)
		return os.IsNotExist(err)
	})
	if !allGone(pids) {
		t.Errorf("the job's processes %v still run", pids)
	}
}

// TestRunSweepSparesLiveSibling: two dlock runs in the same cgroup. Each
// guardian sweeps the job cgroups beside its own whose guardian is dead;
// the first run's guardian lives (running, then stopped with SIGSTOP, which
// a sweep must not take for dead), so the runs of the second must leave
// its job and cgroup alone.
func TestRunSweepSparesLiveSibling(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := startDlock(t, "first", []string{"D=" + dir}, "run", "--url", "mem://", "--key", "first", "-v", "--",
		"sh", "-c", `setsid sleep 600 & echo $! > "$D/daemon"; echo $$ > "$D/pid"; exec sleep 600`)
	waitFor(t, 20*time.Second, "the first job to start", func() bool { return readFile(t, filepath.Join(dir, "pid")) != "" })
	pids := readPIDs(t, dir, "pid", "daemon")
	jobCg := waitCgroup(t, first)
	guardian := parentPID(t, pids[0])
	for i, stop := range []bool{false, false, true, true} {
		if stop {
			syscall.Kill(guardian, syscall.SIGSTOP)
			t.Cleanup(func() { syscall.Kill(guardian, syscall.SIGCONT) })
		}
		next := startDlock(t, "next", nil, "run", "--url", "mem://", "--key", "next", "--", "true")
		if code := next.wait(t, 20*time.Second); code != 0 {
			t.Fatalf("next run %d: exit status %d; stderr:\n%s", i, code, next.stderr.String())
		}
		if processGone(pids[0]) || processGone(pids[1]) {
			t.Fatalf("next run %d (first's guardian stopped: %v) killed the first run's job %v", i, stop, pids)
		}
		if _, err := os.Stat(jobCg); err != nil {
			t.Fatalf("next run %d removed the first run's cgroup: %v", i, err)
		}
	}
	syscall.Kill(guardian, syscall.SIGCONT)
	first.cmd.Process.Signal(syscall.SIGTERM)
	first.wait(t, 20*time.Second)
	if !allGone(pids) {
		t.Errorf("the first job's processes %v outlived its dlock run", pids)
	}
}
