//go:build linux

package main

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
)

// fullPipe returns a pipe whose buffer is already full: the first write
// to w blocks until someone reads r.
func fullPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	rc, err := w.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		syscall.SetNonblock(int(fd), true)
		junk := make([]byte, 4096)
		for {
			if _, err := syscall.Write(int(fd), junk); errors.Is(err, syscall.EAGAIN) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		syscall.SetNonblock(int(fd), false)
	})
	return r, w
}

// startBlockedStderr starts dlock with args and a stderr that nobody reads
// (full); drain lets it write again and returns what it wrote.
func startBlockedStderr(t *testing.T, env []string, args ...string) (cmd *exec.Cmd, done <-chan struct{}, drain func() string) {
	t.Helper()
	r, w := fullPipe(t)
	cmd = exec.Command(dlockBin, args...)
	cmd.Env = append(os.Environ(), append(env, "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))...)
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	ch := make(chan struct{})
	go func() { cmd.Wait(); close(ch) }()
	t.Cleanup(func() { cmd.Process.Kill(); r.Close(); <-ch })
	out := make(chan string, 1)
	var started bool
	return cmd, ch, func() string {
		if !started {
			started = true
			go func() { b, _ := io.ReadAll(r); out <- string(b) }()
		}
		select {
		case s := <-out:
			return s
		case <-time.After(20 * time.Second):
			t.Fatal("dlock's stderr still open 20s after draining began")
			return ""
		}
	}
}

// TestRedisElectBlockedStderrKeepsJob: dlock elect's stderr is a pipe
// nobody reads. A log line that cannot be written must not keep dlock
// elect from passing the renewed deadline to the guardian: the job is
// still running, without SIGTERM, several TTLs after it started (it was
// killed at the first deadline when dlock blocked on "started").
func TestRedisElectBlockedStderrKeepsJob(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	dir := t.TempDir()
	key := uniqueKey(t)
	job := script(t, dir, "job.sh", `
trap 'echo term > "$D/term"; exit 0' TERM
echo $$ > "$D/pid"
while :; do sleep 0.05; done
`)
	const ttl = time.Second
	cmd, done, drain := startBlockedStderr(t, []string{"D=" + dir},
		"elect", "--url", "redis://"+srv.Addr(), "--key", key, "--ttl", ttl.String(), "--", job)
	waitFor(t, 20*time.Second, "the job to start", func() bool { return readFile(t, filepath.Join(dir, "pid")) != "" })
	pids := readPIDs(t, dir, "pid")
	start := time.Now()
	// The job was stopped by its first deadline (less than the TTL): give
	// it several TTLs, and stop looking as soon as it gets SIGTERM.
	for time.Since(start) < 4*ttl && readFile(t, filepath.Join(dir, "term")) == "" && allGone(pids) == false {
		time.Sleep(20 * time.Millisecond) // the job's death has no event here
	}
	if s := readFile(t, filepath.Join(dir, "term")); s != "" || allGone(pids) {
		t.Fatalf("the job got SIGTERM or died %v after it started, with the lease held: dlock elect blocked on its stderr", time.Since(start).Round(time.Millisecond))
	}
	cmd.Process.Signal(syscall.SIGTERM)
	out := drain()
	<-done
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit status %d, want 0 (the job's, after forwarded SIGTERM); stderr:\n%s", code, out)
	}
	if !strings.Contains(out, "elected") || !strings.Contains(out, "forwarded SIGTERM") {
		t.Errorf("stderr lost messages:\n%s", out)
	}
}

// TestRedisRunVerboseBlockedStderr: dlock run --verbose logs every lock
// event; with a stderr nobody reads, the renewals must still reach the
// guardian, and the job runs on past its first deadline.
func TestRedisRunVerboseBlockedStderr(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	dir := t.TempDir()
	key := uniqueKey(t)
	job := script(t, dir, "job.sh", `
trap 'echo term > "$D/term"; exit 0' TERM
echo $$ > "$D/pid"
while :; do sleep 0.05; done
`)
	const ttl = time.Second
	cmd, done, drain := startBlockedStderr(t, []string{"D=" + dir},
		"run", "--verbose", "--url", "redis://"+srv.Addr(), "--key", key, "--ttl", ttl.String(), "--", job)
	waitFor(t, 20*time.Second, "the job to start", func() bool { return readFile(t, filepath.Join(dir, "pid")) != "" })
	pids := readPIDs(t, dir, "pid")
	start := time.Now()
	for time.Since(start) < 4*ttl && readFile(t, filepath.Join(dir, "term")) == "" && allGone(pids) == false {
		time.Sleep(20 * time.Millisecond) // the job's death has no event here
	}
	if s := readFile(t, filepath.Join(dir, "term")); s != "" || allGone(pids) {
		t.Fatalf("the job got SIGTERM or died %v after it started, with the lease held: dlock run blocked on its stderr", time.Since(start).Round(time.Millisecond))
	}
	cmd.Process.Signal(syscall.SIGTERM)
	out := drain()
	<-done
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit status %d, want 0 (the job's, after forwarded SIGTERM); stderr:\n%s", code, out)
	}
	if !strings.Contains(out, "lock event") {
		t.Errorf("stderr lost messages:\n%s", out)
	}
}
