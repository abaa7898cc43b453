package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startWithPID starts "sleep 600" as the leader of a process group of its
// own with pid want, through /proc/sys/kernel/ns_last_pid (root only); it
// retries while other processes take the pid first.
func startWithPID(t *testing.T, want int) *exec.Cmd {
	t.Helper()
	for range 200 {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(want-1)), 0); err != nil {
			t.Skipf("cannot choose the next pid (needs root): %v", err)
		}
		c := exec.Command("sleep", "600")
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		if c.Process.Pid == want {
			return c // the caller waits for it
		}
		c.Process.Kill()
		c.Wait()
	}
	t.Fatalf("could not start a process with pid %d", want)
	return nil
}

// TestGuardianSparesReusedGroupID: the job exits and leaves a process
// (in a session of its own) that ignores SIGTERM; while the guardian
// clears it, the job's pid, which was also its process group's id, is
// taken by an unrelated group leader. The guardian's SIGKILL must reach
// the leftover only: it was sent to the job's group id too, and killed
// the stranger.
func TestGuardianSparesReusedGroupID(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	job := script(t, dir, "job.sh", `
setsid sh -c 'trap "" TERM; echo $$ > "$D/left"; exec sleep 600' &
while [ ! -s "$D/left" ]; do sleep 0.01; done
echo $$ > "$D/pid"
exit 0
`)
	p := startDlock(t, "run", []string{"D=" + dir}, "run", "--url", "mem://", "--key", "k", "--ttl", "10m", "--grace", "5s", "--", job)
	waitFor(t, 20*time.Second, "the job to exit and leave a process", func() bool {
		return strings.Contains(p.stderr.String(), "left processes behind")
	})
	left := readPIDs(t, dir, "left")
	jobPID := readPIDs(t, dir, "pid")[0]
	stranger := startWithPID(t, jobPID)
	exited := make(chan struct{})
	go func() { stranger.Wait(); close(exited) }()
	t.Cleanup(func() { stranger.Process.Kill(); <-exited })
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Errorf("exit status %d, want the job's 0", code)
	}
	if !allGone(left) {
		t.Errorf("the leftover %v still runs", left)
	}
	if processGone(stranger.Process.Pid) {
		t.Fatalf("an unrelated process that took the job's pid %d as its group id was killed", jobPID)
	}
}
