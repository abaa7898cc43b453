package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sigIgnored reports whether pid ignores sig, from /proc/PID/status.
func sigIgnored(t *testing.T, pid int, sig syscall.Signal) bool {
	t.Helper()
	for _, line := range strings.Split(readFile(t, "/proc/"+strconv.Itoa(pid)+"/status"), "\n") {
		if v, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return mask&(1<<(uint(sig)-1)) != 0
		}
	}
	t.Fatalf("no SigIgn for pid %d", pid)
	return false
}

// TestRunNohup: under nohup (SIGHUP and SIGINT ignored at start), dlock
// run leaves them ignored, in itself and in the job, and does not forward
// them: a hangup does not end the job.
func TestRunNohup(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc")
	}
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", `trap "" HUP INT; exec "$DLOCK_BIN" run --url mem:// --key k -- sh -c 'echo $$ > "$D/pid"; while [ ! -e "$D/go" ]; do sleep 0.02; done; exit 4'`)
	cmd.Env = append(os.Environ(), "D="+dir, "DLOCK_BIN="+dlockBin, "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	waitFor(t, 20*time.Second, "the job to start", func() bool { return readFile(t, filepath.Join(dir, "pid")) != "" })
	job := readPIDs(t, dir, "pid")[0]
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGINT} {
		if !sigIgnored(t, cmd.Process.Pid, sig) {
			t.Errorf("dlock does not ignore %v, which was ignored when it started", signalName(sig))
		}
		if !sigIgnored(t, job, sig) {
			t.Errorf("the job does not ignore %v, which was ignored when dlock started", signalName(sig))
		}
	}
	cmd.Process.Signal(syscall.SIGHUP)
	os.WriteFile(filepath.Join(dir, "go"), nil, 0o644)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("dlock run still runs")
	}
	if code := cmd.ProcessState.ExitCode(); code != 4 {
		t.Errorf("exit status %d, want the job's 4; stderr:\n%s", code, stderr.String())
	}
}
