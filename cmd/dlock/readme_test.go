//go:build unix

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// readmeStep is one "$ command" of a README console block and the output
// the README shows for it.
type readmeStep struct {
	cmd        string
	background bool
	want       []string
}

// readmeConsole returns the steps of the first console block after the
// heading in the README.
func readmeConsole(t *testing.T, heading string) []readmeStep {
	t.Helper()
	readme := readFile(t, filepath.Join("..", "..", "README.md"))
	_, rest, ok := strings.Cut(readme, "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README has no heading %q", heading)
	}
	_, rest, ok = strings.Cut(rest, "```console\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatalf("no console block after %q", heading)
	}
	var steps []readmeStep
	for _, line := range strings.Split(strings.TrimRight(block, "\n"), "\n") {
		if cmd, ok := strings.CutPrefix(line, "$ "); ok {
			st := readmeStep{cmd: cmd}
			if c, ok := strings.CutSuffix(cmd, " &"); ok {
				st = readmeStep{cmd: c, background: true}
			}
			steps = append(steps, st)
			continue
		}
		if len(steps) == 0 {
			t.Fatalf("console block starts with output %q", line)
		}
		steps[len(steps)-1].want = append(steps[len(steps)-1].want, line)
	}
	return steps
}

var (
	maskTimestamp = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d)`)
	maskClock     = regexp.MustCompile(`\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d)`)
	maskDuration  = regexp.MustCompile(`\d+(\.\d+)?(ns|µs|ms|s|m|h)\b`)
	maskNumber    = regexp.MustCompile(`\d+`)
)

// mask hides what changes from run to run: timestamps, times of day,
// durations and numbers (fences).
func mask(s string) string {
	s = maskTimestamp.ReplaceAllString(s, "TIMESTAMP")
	s = maskClock.ReplaceAllString(s, "CLOCK")
	s = maskDuration.ReplaceAllString(s, "DURATION")
	return maskNumber.ReplaceAllString(s, "N")
}

// TestREADMECronExample runs the README's cron console session with the
// built dlock on a real Redis and compares the output, masked, so that the
// README cannot drift from what dlock prints.
func TestREADMECronExample(t *testing.T) {
	t.Parallel()
	steps := readmeConsole(t, "## A cron job that runs on one machine at a time")
	env := append(os.Environ(), redisEnv(t, t.TempDir())...)
	env = append(env, "PATH="+filepath.Dir(dlockBin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	var background []*exec.Cmd
	t.Cleanup(func() {
		for _, c := range background {
			c.Process.Kill()
			c.Wait()
		}
	})
	for _, st := range steps {
		var out syncBuffer
		c := exec.Command("sh", "-c", st.cmd)
		c.Env = env
		c.Stdout, c.Stderr = &out, &out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		if st.background {
			background = append(background, c)
			waitFor(t, 20*time.Second, "the output of "+st.cmd, func() bool {
				return strings.Count(out.String(), "\n") >= len(st.want)
			})
		} else {
			c.Wait()
		}
		got := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
		if len(st.want) == 0 && out.String() == "" {
			got = nil
		}
		if len(got) != len(st.want) {
			t.Errorf("$ %s\nprinted %d lines, the README shows %d:\n%s", st.cmd, len(got), len(st.want), out.String())
			continue
		}
		for i := range got {
			if mask(got[i]) != mask(st.want[i]) {
				t.Errorf("$ %s\nprinted  %s\nREADME   %s", st.cmd, got[i], st.want[i])
			}
		}
	}
	for _, c := range background {
		c.Wait() // the README's background job ends on its own
	}
	background = nil
}

// maskDemoID hides the demo's random key and store name.
var maskDemoID = regexp.MustCompile(`dlock-demo-[a-z0-9]+`)

// TestREADMEDemo runs the README's quick-start demo with the built dlock
// and compares its output with the README's, masked (numbers, times,
// durations, the random key), so that the README shows what dlock demo
// prints today.
func TestREADMEDemo(t *testing.T) {
	t.Parallel()
	steps := readmeConsole(t, "## Quick start")
	if len(steps) != 1 || steps[0].cmd != "go run ./cmd/dlock demo" {
		t.Fatalf("the quick start's console block is not one 'go run ./cmd/dlock demo': %+v", steps)
	}
	want := steps[0].want
	// Times are padded to a width: spaces do not count either.
	masked := func(s string) string {
		return strings.Join(strings.Fields(mask(maskDemoID.ReplaceAllString(s, "dlock-demo-ID"))), " ")
	}
	// The demo's timeline depends on the scheduler: events of one moment
	// (an election and another worker seeing it) come in either order,
	// so lines are compared as a sorted list; and a renewal that a loaded
	// machine delays past "demo over" drops a line, so one more run tells
	// a slow machine from a README that drifted.
	sorted := func(lines []string) []string {
		m := make([]string, len(lines))
		for i, l := range lines {
			m[i] = masked(l)
		}
		slices.Sort(m)
		return m
	}
	var diffs []string
	for attempt := 1; attempt <= 2; attempt++ {
		p := startDlock(t, "dlock demo", []string{"DLOCK_URL="}, "demo")
		if code := p.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("dlock demo: exit status %d; stderr:\n%s", code, p.stderr.String())
		}
		got := strings.Split(strings.TrimRight(p.stdout.String(), "\n"), "\n")
		diffs = nil
		if g, w := sorted(got), sorted(want); !slices.Equal(g, w) {
			for _, l := range g {
				if !slices.Contains(w, l) {
					diffs = append(diffs, "printed, not in the README: "+l)
				}
			}
			for _, l := range w {
				if !slices.Contains(g, l) {
					diffs = append(diffs, "in the README, not printed: "+l)
				}
			}
			if len(g) != len(w) {
				diffs = append(diffs, fmt.Sprintf("dlock demo printed %d lines, the README shows %d", len(g), len(w)))
			}
			diffs = append(diffs, "dlock demo printed:\n"+p.stdout.String())
		}
		if len(diffs) == 0 {
			return
		}
		t.Logf("attempt %d:\n%s", attempt, strings.Join(diffs, "\n"))
	}
	t.Errorf("the README's demo output differs from dlock demo's:\n%s", strings.Join(diffs, "\n"))
}
