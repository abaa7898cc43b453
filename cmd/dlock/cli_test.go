//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runInProcess runs dlock's entry point in this process.
func runInProcess(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	t.Setenv("DLOCK_URL", "")
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"NoCommand", nil, "Usage:"},
		{"UnknownCommand", []string{"lock"}, `unknown command "lock"`},
		{"RunMissingKey", []string{"run", "--url", "mem://", "--", "true"}, "missing --key"},
		{"RunMissingCommand", []string{"run", "--url", "mem://", "--key", "k"}, "missing command"},
		{"RunMissingCommandAfterDashes", []string{"run", "--url", "mem://", "--key", "k", "--"}, "missing command"},
		{"RunBadTTL", []string{"run", "--url", "mem://", "--key", "k", "--ttl", "soon", "--", "true"}, `dlock run: invalid value "soon" for flag --ttl`},
		{"RunZeroTTL", []string{"run", "--url", "mem://", "--key", "k", "--ttl", "0s", "--", "true"}, "--ttl 0s: must be at least"},
		{"RunBadWait", []string{"run", "--url", "mem://", "--key", "k", "--wait", "a-while", "--", "true"}, `want 0, a duration such as 30s, or "forever"`},
		{"RunNegativeGrace", []string{"run", "--url", "mem://", "--key", "k", "--grace", "-1s", "--", "true"}, "--grace -1s: must not be negative"},
		{"RunUnknownFlag", []string{"run", "--url", "mem://", "--key", "k", "--lease", "1s", "--", "true"}, "dlock run: unknown flag --lease"},
		{"RunNoURL", []string{"run", "--key", "k", "--", "true"}, "pass --url or set DLOCK_URL"},
		{"RunUnknownScheme", []string{"run", "--url", "zookeeper://u:s3cret@zk:2181/", "--key", "k", "--", "true"}, `unknown URL scheme "zookeeper"`},
		{"RunMalformedURL", []string{"run", "--url", "redis://u:s3cret@[::1", "--key", "k", "--", "true"}, "malformed URL"},
		{"RunBadURLParam", []string{"run", "--url", "mem://x?ttl=-5s", "--key", "k", "--", "true"}, "ttl=\"-5s\""},
		{"RunUnknownURLParam", []string{"run", "--url", "mem://x?colour=blue", "--key", "k", "--", "true"}, "unknown URL parameter colour"},
		{"RunSecretInQuery", []string{"run", "--url", "mem://x?sentinel_password=s3cret", "--key", "k", "--", "true"}, "unknown URL parameter sentinel_password"},
		{"ElectMissingKey", []string{"elect", "--url", "mem://", "--", "true"}, "missing --key"},
		{"ElectMissingCommand", []string{"elect", "--url", "mem://", "--key", "k"}, "missing command"},
		{"ElectBadTTL", []string{"elect", "--url", "mem://", "--key", "k", "--ttl", "-1s", "--", "true"}, "--ttl -1s: must be at least"},
		{"StatusMissingKey", []string{"status", "--url", "mem://"}, "missing key"},
		{"StatusTwoKeys", []string{"status", "--url", "mem://", "a", "b"}, "one key expected"},
		{"StatusNoURL", []string{"status", "k"}, "pass --url or set DLOCK_URL"},
		{"DemoOneWorker", []string{"demo", "--workers", "1"}, "--workers 1: want 2 to 20"},
		{"DemoUnknownScheme", []string{"demo", "--url", "consul://root:s3cret@consul:8500"}, `unknown URL scheme "consul"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runInProcess(tc.args...)
			if code != exitUsage {
				t.Errorf("exit status %d, want %d (usage)", code, exitUsage)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr does not say %q:\n%s", tc.want, stderr)
			}
			if strings.Contains(stdout+stderr, "s3cret") {
				t.Errorf("the password was printed:\n%s%s", stdout, stderr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{
		{"help"}, {"--help"}, {"help", "run"}, {"run", "--help"}, {"elect", "-h"}, {"status", "--help"}, {"demo", "--help"},
	} {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			code, stdout, stderr := runInProcess(args...)
			if code != 0 || stderr != "" {
				t.Errorf("exit status %d, stderr %q; want 0 and nothing", code, stderr)
			}
			for _, want := range []string{"Usage", "dlock"} {
				if !strings.Contains(stdout, want) {
					t.Errorf("help does not contain %q:\n%s", want, stdout)
				}
			}
			if len(args) > 1 && !strings.Contains(stdout, "Examples:") {
				t.Errorf("help has no examples:\n%s", stdout)
			}
		})
	}
}

// checkDemo checks the demo's output: a crash, then a takeover with a
// larger fence.
func checkDemo(t *testing.T, out string) {
	t.Helper()
	var elected []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, " elected with fence ") {
			elected = append(elected, line)
		}
	}
	if len(elected) != 2 {
		t.Fatalf("want 2 elections (one before the crash, one after), got %d:\n%s", len(elected), out)
	}
	f1, f2 := fences(t, elected[0]), fences(t, elected[1])
	if f2[0] <= f1[0] {
		t.Errorf("fence after the takeover %d is not larger than before, %d:\n%s", f2[0], f1[0], out)
	}
	for _, want := range []string{"CRASHES", "takeover", "Never two runners at once"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

func TestDemoInProcess(t *testing.T) {
	t.Setenv("DLOCK_URL", "")
	start := time.Now()
	code, stdout, stderr := runInProcess("demo")
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s\nstdout:\n%s", code, stderr, stdout)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("demo took %v; want well under 10s", d)
	}
	checkDemo(t, stdout)
}

func TestDemoProcess(t *testing.T) {
	t.Parallel()
	start := time.Now()
	p := startDlock(t, "demo", nil, "demo", "--workers", "4")
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, p.stderr.String())
	}
	t.Logf("dlock demo took %v:\n%s", time.Since(start), p.stdout.String())
	checkDemo(t, p.stdout.String())
}

// The tests below need no shared backend; they run on mem://, which lives
// in the dlock process.

func TestRunPassesExitStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		argv []string
		want int
	}{
		{"Zero", []string{"true"}, 0},
		{"Three", []string{"sh", "-c", "exit 3"}, 3},
		{"KilledBySIGKILL", []string{"sh", "-c", "kill -KILL $$"}, 128 + 9},
		{"NotFound", []string{"dlock-no-such-command"}, exitNotFound},
		{"NotExecutable", []string{"/etc/passwd"}, exitCannotExec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startDlock(t, "dlock run", nil, append([]string{"run", "--url", "mem://", "--key", "k", "--"}, tc.argv...)...)
			if code := p.wait(t, 20*time.Second); code != tc.want {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, tc.want, p.stderr.String())
			}
		})
	}
}

func TestRunEnvironment(t *testing.T) {
	t.Parallel()
	p := startDlock(t, "dlock run", nil, "run", "--url", "mem://", "--key", "env-key", "--",
		"sh", "-c", `echo "key=$DLOCK_KEY fence=$DLOCK_FENCE token=${#DLOCK_TOKEN}"`)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, p.stderr.String())
	}
	if got, want := p.stdout.String(), "key=env-key fence=1 token=26\n"; got != want {
		t.Errorf("the command printed %q, want %q", got, want)
	}
}

// TestRunForwardsSignals sends SIGHUP, then SIGTERM, to dlock run: both
// reach the command.
func TestRunForwardsSignals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	child := script(t, dir, "child.sh", `
trap 'echo HUP >> "$D/got"' HUP
trap 'echo TERM >> "$D/got"; exit 7' TERM
echo $$ > "$D/pid"
while :; do sleep 30 & wait $!; done
`)
	// A sleep the shell forks as SIGTERM arrives may catch it (and the
	// sweep's, 1 ms later) with the shell's inherited trap before it execs,
	// and drop it: dash clears its traps in the child and the signal is
	// lost. dlock then waits out the grace period and sends SIGKILL, as it
	// must; a grace well below the wait keeps that in the bound.
	p := startDlock(t, "dlock run", []string{"D=" + dir}, "run", "--url", "mem://", "--key", "k", "--grace", "1s", "--", child)
	waitFor(t, 20*time.Second, "the command to start", func() bool { return readFile(t, filepath.Join(dir, "pid")) != "" })
	pid, _ := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(dir, "pid"))))
	killGroupAtEnd(t, pid)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the command to get SIGHUP", func() bool { return readFile(t, filepath.Join(dir, "got")) == "HUP\n" })
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 7 {
		t.Errorf("exit status %d, want the command's 7; stderr:\n%s", code, p.stderr.String())
	}
	if got := readFile(t, filepath.Join(dir, "got")); got != "HUP\nTERM\n" {
		t.Errorf("the command got %q, want HUP then TERM", got)
	}
}

// TestRunSweepsProcessGroup: processes the command leaves behind in its
// group are terminated before dlock run exits.
func TestRunSweepsProcessGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	child := script(t, dir, "child.sh", `
sh -c 'trap "" TERM; echo $$ > "$D/straggler"; exec sleep 60' &
while [ ! -s "$D/straggler" ]; do sleep 0.01; done
exit 0
`)
	start := time.Now()
	p := startDlock(t, "dlock run", []string{"D=" + dir}, "run", "--url", "mem://", "--key", "k", "--grace", "500ms", "--", child)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Errorf("exit status %d, want 0; stderr:\n%s", code, p.stderr.String())
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(dir, "straggler"))))
	killGroupAtEnd(t, pid)
	if !processGone(pid) {
		t.Errorf("the process left behind (pid %d) still runs after dlock run exited", pid)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("dlock run exited after %v, before the grace period for a process that ignores SIGTERM", d)
	}
	if !strings.Contains(p.stderr.String(), "SIGKILL") {
		t.Errorf("stderr does not mention SIGKILL:\n%s", p.stderr.String())
	}
}

// TestRunKilledTakesCommandAlong: when dlock run dies by SIGKILL, the
// kernel kills the command (Linux parent-death signal), so it does not run
// on without the lock.
func TestRunKilledTakesCommandAlong(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs Linux")
	}
	t.Parallel()
	dir := t.TempDir()
	child := script(t, dir, "child.sh", `echo $$ > "$D/pid"; exec sleep 60`)
	p := startDlock(t, "dlock run", []string{"D=" + dir}, "run", "--url", "mem://", "--key", "k", "--", child)
	waitFor(t, 20*time.Second, "the command to start", func() bool { return readFile(t, filepath.Join(dir, "pid")) != "" })
	pid, _ := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(dir, "pid"))))
	killGroupAtEnd(t, pid)
	p.cmd.Process.Kill()
	p.wait(t, 10*time.Second)
	waitFor(t, 5*time.Second, "the command to die with dlock", func() bool { return processGone(pid) })
}

// TestLogFormats: --log-format json writes one JSON object per line,
// --verbose adds every lock event, and neither shows the lease's token.
func TestLogFormats(t *testing.T) {
	code, stdout, stderr := runInProcess("run", "--url", "mem://", "--key", "k", "--log-format", "json", "--verbose",
		"--", "sh", "-c", `echo "$DLOCK_TOKEN"`)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	token := strings.TrimSpace(stdout)
	if token == "" {
		t.Fatal("the command did not get DLOCK_TOKEN")
	}
	var events []string
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("stderr line %q is not JSON: %v", line, err)
		}
		if ev, ok := rec["event"].(string); ok {
			events = append(events, ev)
		}
	}
	if strings.Join(events, " ") != "granted released" {
		t.Errorf("--verbose logged events %v; want [granted released]", events)
	}
	if strings.Contains(stderr, token) {
		t.Errorf("the log shows the token:\n%s", stderr)
	}
	if code, _, stderr := runInProcess("run", "--url", "mem://", "--key", "k", "--", "true"); code != 0 || stderr != "" {
		t.Errorf("without --verbose: exit %d, stderr %q; want 0 and nothing logged", code, stderr)
	}
}
