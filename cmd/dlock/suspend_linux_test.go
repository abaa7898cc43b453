package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGuardianKillsAtOnceAfterSuspend: the machine is suspended (faked in
// the guardian's clock) for longer than the TTL while the job runs. The
// guardian's deadline runs on the monotonic clock, which Linux stops while
// suspended; the backend's expiry does not stop, so the key was freed long
// ago. The guardian must kill the job at once after the resume, not when
// its monotonic deadline comes (never, while renewals go on), nor at the
// next renewal (every 2s): a timer on CLOCK_BOOTTIME wakes it. Not
// parallel: it sets the environment of the guardians it starts.
func TestGuardianKillsAtOnceAfterSuspend(t *testing.T) {
	dir := t.TempDir()
	suspend := filepath.Join(dir, "suspend")
	t.Setenv(fakeSuspendEnv, suspend)
	t.Setenv("D", dir)
	type result struct {
		code   int
		stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, _, stderr := runInProcess("run", "--url", "mem://", "--key", "suspend", "--ttl", "6s", "--",
			"sh", "-c", `echo $$ > "$D/pid"; exec sleep 600`)
		done <- result{code, stderr}
	}()
	waitFor(t, 20*time.Second, "the job to start", func() bool { return readFile(t, filepath.Join(dir, "pid")) != "" })
	pids := readPIDs(t, dir, "pid")
	time.Sleep(300 * time.Millisecond)
	if allGone(pids) {
		t.Fatal("the job died before the suspend")
	}
	resumed := time.Now()
	if err := os.WriteFile(suspend, []byte("10s"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !allGone(pids) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !allGone(pids) {
		t.Fatal("the job still runs 10s after a suspend of 10s with a TTL of 6s")
	}
	if took := time.Since(resumed); took > 500*time.Millisecond {
		t.Errorf("the job died %v after the resume, want at once", took)
	}
	select {
	case r := <-done:
		if r.code != exitLeaseLost {
			t.Errorf("exit status %d, want %d; stderr:\n%s", r.code, exitLeaseLost, r.stderr)
		}
		if !strings.Contains(r.stderr, "SIGKILL") {
			t.Errorf("dlock run does not say the job got SIGKILL:\n%s", r.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("dlock run still runs 20s after its job was killed")
	}
}

// TestGuardianKillsAtOnceAfterSuspendInGrace: the job exits and leaves a
// process that ignores SIGTERM, which gets SIGKILL --grace (30s) later, or
// at the lease's deadline if that comes first. During the grace period the
// machine is suspended (faked) for longer than the TTL: the deadline has
// passed on the backend's clock, and the process must die at once after
// the resume, not when the grace period ends. Not parallel: it sets the
// environment of the guardians it starts.
func TestGuardianKillsAtOnceAfterSuspendInGrace(t *testing.T) {
	dir := t.TempDir()
	suspend := filepath.Join(dir, "suspend")
	t.Setenv(fakeSuspendEnv, suspend)
	t.Setenv("D", dir)
	done := make(chan int, 1)
	go func() {
		code, _, _ := runInProcess("run", "--url", "mem://", "--key", "suspend-grace", "--ttl", "6s", "--grace", "30s", "--",
			"sh", "-c", `sh -c 'trap "" TERM; echo $$ > "$D/bg"; exec sleep 600' & while [ ! -s "$D/bg" ]; do sleep 0.01; done`)
		done <- code
	}()
	waitFor(t, 20*time.Second, "the job's leftover to start", func() bool { return readFile(t, filepath.Join(dir, "bg")) != "" })
	pids := readPIDs(t, dir, "bg")
	time.Sleep(500 * time.Millisecond) // the job exits; its leftover ignores SIGTERM
	if allGone(pids) {
		t.Fatal("the leftover died before the suspend")
	}
	resumed := time.Now()
	if err := os.WriteFile(suspend, []byte("10s"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitExit(t, pids, 10*time.Second)
	if !allGone(pids) {
		t.Fatal("the leftover still runs 10s after a suspend of 10s with a TTL of 6s")
	}
	if took := time.Since(resumed); took > 500*time.Millisecond {
		t.Errorf("the leftover died %v after the resume, want at once", took)
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("dlock run still runs 20s after the leftover was killed")
	}
}
