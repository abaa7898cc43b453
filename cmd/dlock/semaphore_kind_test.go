//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRedisLimitKindMismatch: --limit 1 (a lock) on a key held with
// --limit 2 (a semaphore), and --limit 2 on a key held as a lock, are the
// same configuration error as two limits that differ: a usage error that
// names --limit. They were reported as the backend failing (exit 69, "Redis
// key holds data that is not a dlock lock").
func TestRedisLimitKindMismatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, holder, other string }{
		{"lock-on-semaphore", "2", "1"},
		{"semaphore-on-lock", "1", "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			env := redisEnv(t, dir)
			key := uniqueKey(t)
			child := script(t, dir, "child.sh", `
touch "$D/started"
while [ ! -e "$D/go" ]; do sleep 0.02; done
`)
			holder := startDlock(t, "holder", env, "run", "--limit", tc.holder, "--key", key, "--", child)
			waitFor(t, 30*time.Second, "the holder to start", func() bool {
				_, err := os.Stat(filepath.Join(dir, "started"))
				return err == nil
			})
			other := startDlock(t, "other", env, "run", "--limit", tc.other, "--key", key, "--", "true")
			code := other.wait(t, 20*time.Second)
			os.WriteFile(filepath.Join(dir, "go"), nil, 0o644)
			if code != exitUsage || !strings.Contains(other.stderr.String(), "--limit") {
				t.Errorf("dlock run --limit %s on a key held with --limit %s: exit status %d, want %d (usage) naming --limit; stderr:\n%s",
					tc.other, tc.holder, code, exitUsage, other.stderr.String())
			}
			if code := holder.wait(t, 30*time.Second); code != 0 {
				t.Errorf("holder: exit status %d; stderr:\n%s", code, holder.stderr.String())
			}
		})
	}
}

// TestRedisElectLimitMismatch: dlock elect with a --limit that disagrees
// with the key's holders (another limit, or the other kind) is a usage
// error naming --limit, as for dlock run.
func TestRedisElectLimitMismatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := redisEnv(t, dir)
	key := uniqueKey(t)
	child := script(t, dir, "child.sh", `
touch "$D/started"
while [ ! -e "$D/go" ]; do sleep 0.02; done
`)
	holder := startDlock(t, "holder", env, "run", "--limit", "2", "--key", key, "--", child)
	waitFor(t, 30*time.Second, "the holder to start", func() bool {
		_, err := os.Stat(filepath.Join(dir, "started"))
		return err == nil
	})
	for _, limit := range []string{"3", "1"} {
		other := startDlock(t, "elect"+limit, env, "elect", "--limit", limit, "--key", key, "--", "true")
		if code := other.wait(t, 20*time.Second); code != exitUsage || !strings.Contains(other.stderr.String(), "--limit") {
			t.Errorf("dlock elect --limit %s on a key held with --limit 2: exit status %d, want %d (usage) naming --limit; stderr:\n%s",
				limit, code, exitUsage, other.stderr.String())
		}
	}
	os.WriteFile(filepath.Join(dir, "go"), nil, 0o644)
	if code := holder.wait(t, 30*time.Second); code != 0 {
		t.Errorf("holder: exit status %d; stderr:\n%s", code, holder.stderr.String())
	}
}
