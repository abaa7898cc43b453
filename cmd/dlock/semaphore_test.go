//go:build unix

package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRedisRunLimit runs dlock run --limit 2 --wait forever from six
// processes on one key of a real redis-server. Each job records, from
// itself, how many jobs were running when it started (its own marker file
// among the others', removed before it exits): never more than 2, and all
// six run. While two hold the key, dlock status lists both with the
// limit, a seventh dlock run with another limit is refused as a usage
// error, and no third job has started.
func TestRedisRunLimit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := redisEnv(t, dir)
	key := uniqueKey(t)
	child := script(t, dir, "child.sh", `
touch "$D/run.$$"
ls "$D" | grep -c '^run\.' >> "$D/counts"
echo "$DLOCK_FENCE" >> "$D/fences"
while [ ! -e "$D/go" ]; do sleep 0.02; done
sleep 0.2
rm "$D/run.$$"
`)
	var procs []*proc
	for i := range 6 {
		procs = append(procs, startDlock(t, fmt.Sprint("job", i), env,
			"run", "--limit", "2", "--wait", "forever", "--key", key, "--owner", fmt.Sprint("owner-", i), "--", child))
	}
	lines := func(name string) []string { return strings.Fields(readFile(t, filepath.Join(dir, name))) }
	waitFor(t, 30*time.Second, "two jobs to start", func() bool { return len(lines("counts")) >= 2 })

	st := startDlock(t, "status", env, "status", key)
	if code := st.wait(t, 20*time.Second); code != 0 {
		t.Errorf("status of a held semaphore: exit status %d, want 0; stderr:\n%s", code, st.stderr.String())
	}
	out := st.stdout.String()
	if !strings.Contains(out, "limit 2, held by 2") || strings.Count(out, "owner-") != 2 || strings.Count(out, "(fence ") != 2 {
		t.Errorf("status does not list both holders with owner, fence and the limit:\n%s", out)
	}
	other := startDlock(t, "limit3", env, "run", "--limit", "3", "--key", key, "--", "true")
	if code := other.wait(t, 20*time.Second); code != exitUsage || !strings.Contains(other.stderr.String(), "limit") {
		t.Errorf("dlock run --limit 3 on a key held with limit 2: exit status %d, want %d (usage) naming the limit; stderr:\n%s",
			code, exitUsage, other.stderr.String())
	}
	if n := len(lines("counts")); n != 2 {
		t.Errorf("%d jobs started while two held the key and none had finished; want 2", n)
	}

	os.WriteFile(filepath.Join(dir, "go"), nil, 0o644)
	for _, p := range procs {
		if code := p.wait(t, 60*time.Second); code != 0 {
			t.Errorf("%s: exit status %d, want 0; stderr:\n%s", p.name, code, p.stderr.String())
		}
	}
	counts := lines("counts")
	if len(counts) != 6 {
		t.Fatalf("%d jobs ran; want all 6 (counts %v)", len(counts), counts)
	}
	most := 0
	for _, c := range counts {
		n, _ := strconv.Atoi(c)
		most = max(most, n)
	}
	if most > 2 || most < 1 {
		t.Errorf("jobs saw %v running at their start; want never more than 2", counts)
	}
	fences := lines("fences")
	if len(slices.Compact(slices.Sorted(slices.Values(fences)))) != 6 {
		t.Errorf("fences %v: each job must have a fence of its own", fences)
	}
}

// TestLimitFlagChecked: a --limit out of range is a usage error, before
// any acquire.
func TestLimitFlagChecked(t *testing.T) {
	// A server that accepts and never answers: a limit checked only after
	// the backend is opened would wait for the open to time out.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	for _, url := range []string{"mem://", "redis://" + silent.Addr().String()} {
		for _, cmd := range []string{"run", "elect"} {
			for _, n := range []string{"0", "-2", "100000000"} {
				start := time.Now()
				p := startDlock(t, cmd+n, []string{"DLOCK_URL=" + url}, cmd, "--limit", n, "--key", "k", "--", "true")
				if code := p.wait(t, 20*time.Second); code != exitUsage || !strings.Contains(p.stderr.String(), "--limit") {
					t.Errorf("dlock %s --limit %s on %s: exit status %d, want %d naming --limit; stderr:\n%s", cmd, n, url, code, exitUsage, p.stderr.String())
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("dlock %s --limit %s on %s took %v: the flag must be refused before the backend is opened", cmd, n, url, d)
				}
			}
		}
	}
}

// TestRedisElectLimit: three dlock elect --limit 2 on one key of a real
// redis-server: two run CMD, the third stands by and takes over when a
// runner's CMD exits; never more than two ran at once.
func TestRedisElectLimit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := redisEnv(t, dir)
	key := uniqueKey(t)
	child := script(t, dir, "child.sh", `
touch "$D/run.$$"
ls "$D" | grep -c '^run\.' >> "$D/counts"
while [ ! -e "$D/go" ]; do sleep 0.02; done
sleep 0.2
rm "$D/run.$$"
`)
	var procs []*proc
	for i := range 3 {
		procs = append(procs, startDlock(t, fmt.Sprint("cand", i), env,
			"elect", "--limit", "2", "--ttl", "2s", "--key", key, "--owner", fmt.Sprint("cand-", i), "--", child))
	}
	lines := func(name string) []string { return strings.Fields(readFile(t, filepath.Join(dir, name))) }
	waitFor(t, 30*time.Second, "two leaders to start", func() bool { return len(lines("counts")) >= 2 })
	st := startDlock(t, "status", env, "status", key)
	if code := st.wait(t, 20*time.Second); code != 0 || !strings.Contains(st.stdout.String(), "limit 2, held by 2") {
		t.Errorf("status: exit status %d, stdout:\n%s", code, st.stdout.String())
	}
	if n := len(lines("counts")); n != 2 {
		t.Errorf("%d commands started with limit 2 and none finished; want 2", n)
	}
	os.WriteFile(filepath.Join(dir, "go"), nil, 0o644)
	for _, p := range procs {
		if code := p.wait(t, 60*time.Second); code != 0 {
			t.Errorf("%s: exit status %d, want 0 (its command's); stderr:\n%s", p.name, code, p.stderr.String())
		}
	}
	counts := lines("counts")
	if len(counts) != 3 {
		t.Fatalf("%d commands ran; want 3 (the standby took over)", len(counts))
	}
	for _, c := range counts {
		if n, _ := strconv.Atoi(c); n > 2 {
			t.Errorf("a command saw %d running; want never more than 2 (counts %v)", n, counts)
		}
	}
}
