//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRedisRunContendersHandOff: several dlock run --wait on one key, the
// key handed from one to the next as each command ends (direct handoff on
// Redis): every command runs once, never two at a time, each with a fence
// above the one before.
func TestRedisRunContendersHandOff(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := redisEnv(t, dir)
	key := uniqueKey(t)
	child := script(t, dir, "child.sh", `
mkdir "$D/in" || echo "overlap at fence $DLOCK_FENCE" >> "$D/bad"
echo "$DLOCK_FENCE" >> "$D/fences"
sleep 0.1
rmdir "$D/in"
`)
	const n = 4
	var procs []*proc
	for i := range n {
		name := "contender-" + strconv.Itoa(i)
		procs = append(procs, startDlock(t, name, env, "run", "--key", key, "--owner", name, "--wait", "60s", "--", child))
	}
	for _, p := range procs {
		if code := p.wait(t, 60*time.Second); code != 0 {
			t.Errorf("%s: exit status %d, want 0; stderr:\n%s", p.name, code, p.stderr.String())
		}
	}
	if bad := readFile(t, filepath.Join(dir, "bad")); bad != "" {
		t.Errorf("commands ran at the same time:\n%s", bad)
	}
	fences := strings.Fields(readFile(t, filepath.Join(dir, "fences")))
	if len(fences) != n {
		t.Fatalf("%d commands ran, want %d: %v", len(fences), n, fences)
	}
	var last uint64
	for i, f := range fences {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil || v <= last {
			t.Errorf("fence %d of the %d-th holder is not above the one before (%d): %v", v, i+1, last, err)
		}
		last = v
	}
	if _, err := os.Stat(filepath.Join(dir, "in")); err == nil {
		t.Error("a command did not finish")
	}
}
