//go:build unix

package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dlock-go/dlock/internal/leasetime"
	"github.com/dlock-go/dlock/internal/redistest"
)

// dlockBin is the dlock binary that TestMain builds, for the tests that
// need real processes: signals, process groups, exit statuses.
var dlockBin string

func TestMain(m *testing.M) {
	// In-process runs of dlock start this test binary as their guardian.
	if len(os.Args) > 1 && os.Args[1] == guardianCmd {
		if path := os.Getenv(fakeSuspendEnv); path != "" {
			go fakeSuspend(path)
		}
		os.Exit(guardianMain(os.Args[2:]))
	}
	closeInheritedOnExec()
	dir, err := os.MkdirTemp("", "dlock-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dlockBin = filepath.Join(dir, "dlock")
	args := []string{"build", "-o", dlockBin}
	if raceEnabled {
		args = append(args, "-race") // the processes are checked too
	}
	out, err := exec.Command(goTool(), append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building dlock: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(&testMain{redistest.Main(m), func() { os.RemoveAll(dir) }})
}

// closeInheritedOnExec keeps the descriptors this test binary inherited
// (a CI runner's pipes) from the processes the tests start, so that what
// a test's dlock passes on to its job is what the test opened.
func closeInheritedOnExec() {
	for _, fd := range inheritedFDs() {
		syscall.CloseOnExec(fd)
	}
}

// fakeSuspendEnv names a file through which a test fakes a suspend of the
// machine for the guardians it starts (this test binary, run by dlock run
// in the test's process): once the file holds a duration, the guardian's
// clock says the machine slept that long, and its loop wakes as a timer on
// CLOCK_BOOTTIME would wake it at a resume.
const fakeSuspendEnv = "DLOCK_TEST_FAKE_SUSPEND"

// fakeSuspend runs in a guardian: it applies the suspend written to path.
func fakeSuspend(path string) {
	for {
		b, _ := os.ReadFile(path)
		if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil {
			leasetime.Suspend(d)
			guardianWake <- struct{}{}
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type testMain struct {
	m     interface{ Run() int }
	after func()
}

func (t *testMain) Run() int {
	defer t.after()
	return t.m.Run()
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// uniqueKey returns a key no other test uses, even on a shared server.
func uniqueKey(t *testing.T) string {
	return strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()) + "-" + strings.ToLower(rand.Text()[:6])
}

// syncBuffer is a bytes.Buffer safe for a process to write while a test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// proc is a running dlock process.
type proc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{} // closed when it has exited
}

// startDlock starts the dlock binary with args. DLOCK_URL is taken from
// env only. The process is killed, if still running, when t ends.
func startDlock(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(dlockBin, args...)
	p.cmd.Env = append(slices.DeleteFunc(os.Environ(), func(s string) bool {
		return strings.HasPrefix(s, "DLOCK_URL=")
	}), env...)
	// A race-enabled binary otherwise sleeps a second before exiting.
	p.cmd.Env = append(p.cmd.Env, "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	// The command's own children inherit the output pipes, and survive a
	// dlock killed with SIGKILL: do not wait for them to close the pipes.
	p.cmd.WaitDelay = time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s stderr:\n%s", p.name, p.stderr.String())
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit status; -1 if a
// signal killed it.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s still running after %v; stderr:\n%s", p.name, timeout, p.stderr.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitFor polls cond until it holds. Files and other processes have no
// event to wait on, so this polls, every 10ms.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// script writes a shell script into dir and returns its path.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// processGone reports whether pid has exited (a zombie counts as gone:
// nobody may reap an orphan in a container without an init).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) STATE ...; comm may contain spaces, so look after ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || strings.HasPrefix(s[i+1:], " Z")
}

// killGroupAtEnd makes sure the process group led by pid is gone when t
// ends, whatever the test did.
func killGroupAtEnd(t *testing.T, pid int) {
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
}

var fenceRE = regexp.MustCompile(`fence (\d+)`)

// fences returns the numbers after "fence " in s, in order.
func fences(t *testing.T, s string) []uint64 {
	t.Helper()
	var fs []uint64
	for _, m := range fenceRE.FindAllStringSubmatch(s, -1) {
		f, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	return fs
}
