//go:build unix

package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
)

// TestRedisRunQuietBusy: --quiet keeps a busy run silent for cron, and
// --busy-exit chooses its status; errors are still printed.
func TestRedisRunQuietBusy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := redisEnv(t, dir)
	key := uniqueKey(t)
	holder := startDlock(t, "holder", env, "run", "--key", key, "--", "sh", "-c",
		`touch "$D/held"; while [ ! -e "$D/go" ]; do sleep 0.02; done`)
	waitFor(t, 20*time.Second, "the holder's job to start", func() bool { return fileExists(filepath.Join(dir, "held")) })

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		silent bool
	}{
		{"Quiet", []string{"-q"}, exitBusy, true},
		{"QuietLong", []string{"--quiet", "--busy-exit", "0"}, 0, true},
		{"BusyExit", []string{"--busy-exit", "3"}, 3, false},
		{"QuietWait", []string{"-q", "--wait", "200ms"}, exitBusy, true},
	} {
		p := startDlock(t, tc.name, env, append(append([]string{"run", "--key", key}, tc.args...), "--", "true")...)
		if code := p.wait(t, 20*time.Second); code != tc.code {
			t.Errorf("%s: exit status %d, want %d; stderr:\n%s", tc.name, code, tc.code, p.stderr.String())
		}
		if got := p.stderr.String(); tc.silent != (got == "") {
			t.Errorf("%s: stderr %q; want it silent: %v", tc.name, got, tc.silent)
		}
		if !tc.silent && !strings.Contains(p.stderr.String(), "is busy") {
			t.Errorf("%s: stderr does not say the key is busy:\n%s", tc.name, p.stderr.String())
		}
	}
	// Errors are not busy: --quiet does not hide them.
	p := startDlock(t, "unreachable", nil, "run", "-q", "--busy-exit", "0", "--url", "redis://127.0.0.1:1", "--key", key, "--", "true")
	if code := p.wait(t, 20*time.Second); code != exitUnavailable || p.stderr.String() == "" {
		t.Errorf("-q with an unreachable backend: exit %d, stderr %q; want %d and a message", code, p.stderr.String(), exitUnavailable)
	}
	os.WriteFile(filepath.Join(dir, "go"), nil, 0o644)
	holder.wait(t, 20*time.Second)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestRunSignalDuringOpen: a signal while the backend is being opened (a
// server that accepts connections and never answers) ends dlock at once
// with 128+N, not after the open's own timeout.
func TestRunSignalDuringOpen(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c // held open, never answered
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	})
	p := startDlock(t, "dlock run", nil, "run", "--url", "redis://"+ln.Addr().String(), "--key", "k", "--", "true")
	var first net.Conn
	select {
	case first = <-accepted:
	case <-time.After(20 * time.Second):
		t.Fatal("dlock never connected")
	}
	t.Cleanup(func() { first.Close() })
	sent := time.Now()
	p.cmd.Process.Signal(syscall.SIGINT)
	code := p.wait(t, 20*time.Second)
	if want := 128 + int(syscall.SIGINT); code != want {
		t.Errorf("exit status %d, want %d; stderr:\n%s", code, want, p.stderr.String())
	}
	if d := time.Since(sent); d > time.Second {
		t.Errorf("dlock run took %v to end after SIGINT, want at once (under 1s)", d)
	}
}

// TestVersion: dlock version and --version describe the build: module,
// version and Go version, from the binary's build information.
func TestVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"version", "--version"} {
		p := startDlock(t, "dlock "+arg, nil, arg)
		if code := p.wait(t, 20*time.Second); code != 0 {
			t.Errorf("dlock %s: exit status %d; stderr:\n%s", arg, code, p.stderr.String())
		}
		out := p.stdout.String()
		for _, want := range []string{"dlock ", "github.com/dlock-go/dlock", runtime.Version()} {
			if !strings.Contains(out, want) {
				t.Errorf("dlock %s does not say %q:\n%s", arg, want, out)
			}
		}
	}
}

// TestMessages: what the built binary prints on bad input says which
// command speaks, once ("dlock run: ", never "dlock run: dlock: "), uses
// --name for flags as the usage does, keeps programmer hints away, and
// holds each error on one line.
func TestMessages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"UnknownFlag", []string{"run", "--url", "mem://", "--key", "k", "--lease", "1s", "--", "true"}, "dlock run: unknown flag --lease\n"},
		{"BadFlagValue", []string{"elect", "--url", "mem://", "--key", "k", "--ttl", "soon", "--", "true"}, `dlock elect: invalid value "soon" for flag --ttl`},
		{"EmptyKey", []string{"run", "--url", "mem://", "--key", "", "--", "true"}, "dlock run: --key must not be empty\n"},
		{"UnknownScheme", []string{"run", "--url", "zk://h/", "--key", "k", "--", "true"}, `dlock run: invalid argument: unknown URL scheme "zk"`},
		{"BusyExitRange", []string{"run", "--url", "mem://", "--key", "k", "--busy-exit", "300", "--", "true"}, "dlock run: --busy-exit 300: want 0 to 255\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startDlock(t, "dlock", nil, tc.args...)
			if code := p.wait(t, 20*time.Second); code != exitUsage {
				t.Errorf("exit status %d, want %d", code, exitUsage)
			}
			got := p.stderr.String()
			if !strings.Contains(got, tc.want) {
				t.Errorf("stderr %q does not say %q", got, tc.want)
			}
			for _, bad := range []string{": dlock: ", "forgotten import", " -lease", " -ttl"} {
				if strings.Contains(got, bad) {
					t.Errorf("stderr contains %q:\n%s", bad, got)
				}
			}
			if lines := strings.Count(got, "\n"); lines > 2 {
				t.Errorf("the error spans %d lines:\n%s", lines, got)
			}
		})
	}
	p := startDlock(t, "help", nil, "run", "--help")
	p.wait(t, 20*time.Second)
	if out := p.stdout.String(); !strings.Contains(out, "\n  --grace duration") || strings.Contains(out, "\n  -grace") {
		t.Errorf("run --help does not show --grace as the usage writes it:\n%s", out)
	}
	for _, cmd := range []string{"run", "elect"} {
		p := startDlock(t, "help", nil, cmd, "--help")
		p.wait(t, 20*time.Second)
		if out := p.stdout.String(); !strings.Contains(out, "cut") || !strings.Contains(out, "SIGKILL") {
			t.Errorf("%s --help does not say that --grace is cut to fit the TTL:\n%s", cmd, out)
		}
	}
}

// TestRedisOwnerEscaped: an owner name with a newline and a terminal
// escape, set by another client, is printed quoted and escaped by status
// and in busy lines, so it can neither forge a log line nor colour a
// terminal.
func TestRedisOwnerEscaped(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := redisEnv(t, dir)
	key := uniqueKey(t)
	const evil = "evil\nowner\x1b[31mRED"
	holder := startDlock(t, "holder", env, "run", "--key", key, "--owner", evil, "--", "sh", "-c",
		`touch "$D/held"; while [ ! -e "$D/go" ]; do sleep 0.02; done`)
	waitFor(t, 20*time.Second, "the holder's job to start", func() bool { return fileExists(filepath.Join(dir, "held")) })
	defer func() {
		os.WriteFile(filepath.Join(dir, "go"), nil, 0o644)
		holder.wait(t, 20*time.Second)
	}()
	want := `held by "evil\nowner\x1b[31mRED" (fence `
	st := startDlock(t, "status", env, "status", key)
	st.wait(t, 20*time.Second)
	busy := startDlock(t, "busy", env, "run", "--key", key, "--", "true")
	busy.wait(t, 20*time.Second)
	for _, out := range []string{st.stdout.String(), busy.stderr.String()} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not show the owner escaped (%s):\n%s", want, out)
		}
		if strings.Contains(out, "\x1b") || strings.Count(strings.TrimSpace(out), "\n") > 0 {
			t.Errorf("output carries the raw escape or a forged line: %q", out)
		}
	}
}

// jsonRecords parses every line of out as a JSON object.
func jsonRecords(t *testing.T, name, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("%s: stderr line %q is not JSON: %v", name, line, err)
			continue
		}
		for _, k := range []string{"time", "level", "msg", "cmd"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("%s: record without %q: %s", name, k, line)
			}
		}
		for k, v := range rec {
			if _, isNum := v.(float64); isNum && (k == "held" || k == "duration" || k == "ttl") {
				t.Errorf("%s: duration field %q without its unit (_ms): %s", name, k, line)
			}
		}
		recs = append(recs, rec)
	}
	return recs
}

// findRecord returns the first record whose msg contains msg.
func findRecord(recs []map[string]any, msg string) map[string]any {
	for _, r := range recs {
		if s, _ := r["msg"].(string); strings.Contains(s, msg) {
			return r
		}
	}
	return nil
}

// TestRedisLogFormatJSON: with --log-format json, every line dlock writes
// on stderr is one JSON record, at a level that fits (busy INFO, lease
// lost WARN, termination, a dead backend and a command that cannot start
// ERROR), with key, owner and fence as fields and durations in _ms.
func TestRedisLogFormatJSON(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	px := redistest.NewProxy(t, srv.Addr())
	dir := t.TempDir()
	key := uniqueKey(t)
	j := []string{"--log-format", "json"}

	holder := startDlock(t, "holder", []string{"D=" + dir}, append([]string{"run", "--url", "redis://" + px.Addr(), "--key", key,
		"--owner", "the holder", "--ttl", "1s"}, append(j, "--", "sh", "-c", `touch "$D/held"; trap "" TERM; while :; do sleep 0.05; done`)...)...)
	waitFor(t, 20*time.Second, "the holder's job to start", func() bool { return fileExists(filepath.Join(dir, "held")) })

	busy := startDlock(t, "busy", nil, append([]string{"run", "--url", "redis://" + srv.Addr(), "--key", key}, append(j, "--", "true")...)...)
	busy.wait(t, 20*time.Second)
	if r := findRecord(jsonRecords(t, "busy", busy.stderr.String()), "is busy"); r == nil {
		t.Errorf("busy: no busy record:\n%s", busy.stderr.String())
	} else if r["level"] != "INFO" || r["key"] != key || r["holder"] != "the holder" || r["owner"] != nil || r["fence"] == nil || r["expires_in_ms"] == nil {
		t.Errorf("busy: record %v lacks level INFO, key, holder (the other one, not owner: that is this dlock's own), fence or expires_in_ms", r)
	}

	dead := startDlock(t, "dead", nil, append([]string{"run", "--url", "redis://127.0.0.1:1", "--key", key}, append(j, "--", "true")...)...)
	if code := dead.wait(t, 20*time.Second); code != exitUnavailable {
		t.Errorf("dead backend: exit status %d, want %d", code, exitUnavailable)
	}
	if recs := jsonRecords(t, "dead", dead.stderr.String()); len(recs) == 0 || recs[len(recs)-1]["level"] != "ERROR" {
		t.Errorf("dead backend: want an ERROR record:\n%s", dead.stderr.String())
	}

	nox := startDlock(t, "noexec", nil, append([]string{"run", "--url", "mem://", "--key", key}, append(j, "--", "dlock-no-such-command")...)...)
	nox.wait(t, 20*time.Second)
	if r := findRecord(jsonRecords(t, "noexec", nox.stderr.String()), "cannot start"); r == nil || r["level"] != "ERROR" || r["command"] != "dlock-no-such-command" {
		t.Errorf("cannot start: want an ERROR record with the command:\n%s", nox.stderr.String())
	}

	px.Partition()
	if code := holder.wait(t, 20*time.Second); code != exitLeaseLost {
		t.Errorf("holder: exit status %d, want %d", code, exitLeaseLost)
	}
	recs := jsonRecords(t, "holder", holder.stderr.String())
	if r := findRecord(recs, "lost"); r == nil || r["level"] != "WARN" || r["key"] != key || r["fence"] == nil {
		t.Errorf("holder: want a WARN record of the loss with key and fence:\n%s", holder.stderr.String())
	}
	if r := findRecord(recs, "terminated"); r == nil || r["level"] != "ERROR" || r["status"] != float64(exitLeaseLost) {
		t.Errorf("holder: want an ERROR record of the termination with status 76:\n%s", holder.stderr.String())
	}
	if r := findRecord(recs, "SIGTERM"); r == nil || r["left_ms"] == nil {
		t.Errorf("holder: want the deadline's SIGTERM with left_ms:\n%s", holder.stderr.String())
	}
}

// TestSchedule: --grace is cut so that a merely slow renewal never stops
// the command: SIGTERM comes at most half of what is left of the TTL after
// one renewal interval and the drift; SIGKILL lands TTL/5 (at most
// 200ms) before the deadline.
func TestSchedule(t *testing.T) {
	for _, tc := range []struct {
		ttl, renew, drift, grace time.Duration
		wantGrace, wantLead      time.Duration
		cut                      bool
	}{
		{2 * time.Second, 0, 0, 10 * time.Second, (2*time.Second - 22*time.Millisecond - 2*time.Second/3) / 2, 200 * time.Millisecond, true},
		{2 * time.Second, 0, 0, 300 * time.Millisecond, 300 * time.Millisecond, 200 * time.Millisecond, false},
		{15 * time.Second, 0, 0, 10 * time.Second, (15*time.Second - 152*time.Millisecond - 5*time.Second) / 2, 200 * time.Millisecond, true},
		{time.Second, 500 * time.Millisecond, 300 * time.Millisecond, time.Second, 200 * time.Millisecond, 200 * time.Millisecond, true},
		{500 * time.Millisecond, -1, 0, 0, 0, 100 * time.Millisecond, false},
	} {
		kt, cut := schedule(tc.ttl, tc.renew, tc.drift, tc.grace)
		if kt.deadlineGrace != tc.wantGrace || kt.killLead != tc.wantLead || cut != tc.cut || kt.grace != tc.grace {
			t.Errorf("schedule(ttl %v, renew %v, drift %v, grace %v) = %+v, cut %v; want deadline grace %v, kill lead %v, cut %v",
				tc.ttl, tc.renew, tc.drift, tc.grace, kt, cut, tc.wantGrace, tc.wantLead, tc.cut)
		}
	}
}
