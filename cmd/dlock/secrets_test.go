//go:build unix

package main

import (
	"strings"
	"testing"
	"time"
)

// TestPasswordWithSemicolonNotShown: a password in the URL's query that
// holds a ';' (which the strict parser refuses) must not be printed in
// part: the word after the ';' looked like a parameter name and was shown.
func TestPasswordWithSemicolonNotShown(t *testing.T) {
	t.Parallel()
	const tail = "Zq7TailOfSecret"
	urls := []string{
		"redis://127.0.0.1:1/?password=s3cret;" + tail,
		"redis://127.0.0.1:1/?ttl=1s&password=s3cret;" + tail,
		"redis+sentinel://127.0.0.1:1/m?sentinel_password=s3cret;" + tail,
		"redlock://127.0.0.1:1,127.0.0.1:2?password=a;b;" + tail,
	}
	for _, u := range urls {
		for _, args := range [][]string{
			{"run", "--url", u, "--key", "k", "--", "true"},
			{"elect", "--log-format", "json", "--url", u, "--key", "k", "--", "true"},
			{"status", "--url", u, "k"},
		} {
			p := startDlock(t, args[0], nil, args...)
			code := p.wait(t, 30*time.Second)
			out := p.stdout.String() + p.stderr.String()
			if code != exitUsage {
				t.Errorf("dlock %s with %s: exit %d, want %d; output:\n%s", args[0], u, code, exitUsage, out)
			}
			if strings.Contains(out, tail) || strings.Contains(out, "s3cret") {
				t.Errorf("dlock %s shows a part of the password:\n%s", args[0], out)
			}
		}
	}
}

// TestRunBadBusyExitBeforeOpen: --busy-exit out of range is a usage error
// (64) found before the backend is opened: with an unreachable backend it
// was reported as unavailable (69), after the dial.
func TestRunBadBusyExitBeforeOpen(t *testing.T) {
	t.Parallel()
	for _, n := range []string{"300", "-1"} {
		p := startDlock(t, "run", nil, "run", "--busy-exit", n, "--url", "redis://127.0.0.1:1", "--key", "k", "--", "true")
		if code := p.wait(t, 30*time.Second); code != exitUsage {
			t.Errorf("--busy-exit %s with an unreachable backend: exit %d, want %d; stderr:\n%s", n, code, exitUsage, p.stderr.String())
		}
		if want := "dlock run: --busy-exit " + n + ": want 0 to 255\n"; !strings.HasPrefix(p.stderr.String(), want) {
			t.Errorf("stderr %q; want it to start with %q", p.stderr.String(), want)
		}
	}
}
