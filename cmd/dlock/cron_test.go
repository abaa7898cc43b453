//go:build unix

package main

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
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
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("stderr starts %q, want %q", got, tc.want)
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
