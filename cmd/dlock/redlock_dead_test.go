//go:build unix

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
)

// TestRedlockOneNodeDeadFast: with one of three Redlock nodes dead (a port
// nothing listens on, or a server killed), dlock works at the speed of
// the live majority: `status` and `run -- true` used to take 2.7s and
// 3.7s, the dead node's client spending each round (open, release,
// close) on dial retries until the node timeout ended it. The URL sets a
// node timeout of 4s, so the bounds (1.5s and 2s, generous for a loaded
// machine) sit far below what waiting for the dead node costs.
func TestRedlockOneNodeDeadFast(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		dead func(t *testing.T) string
	}{
		{"Refused", deadAddr},
		{"Killed", func(t *testing.T) string {
			s := redistest.StartProcess(t, nil)
			s.Kill(t)
			return s.Addr()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hosts := []string{redistest.StartProcess(t, nil).Addr(), tc.dead(t), redistest.StartProcess(t, nil).Addr()}
			env := []string{"DLOCK_URL=redlock://" + strings.Join(hosts, ",") + "?node_timeout=4s"}
			key := uniqueKey(t)
			for _, step := range []struct {
				name  string
				args  []string
				code  int
				bound time.Duration
			}{
				{"status", []string{"status", key}, exitFree, 1500 * time.Millisecond},
				{"run", []string{"run", "--key", key, "--", "true"}, 0, 2 * time.Second},
				{"status after run", []string{"status", key}, exitFree, 1500 * time.Millisecond},
			} {
				start := time.Now()
				p := startDlock(t, step.name, env, step.args...)
				code := p.wait(t, 20*time.Second)
				took := time.Since(start)
				if code != step.code {
					t.Fatalf("dlock %s: exit status %d, want %d; stderr:\n%s", strings.Join(step.args, " "), code, step.code, p.stderr.String())
				}
				if took > step.bound {
					t.Errorf("dlock %s took %v with one of three nodes dead; want under %v (a majority decides)", strings.Join(step.args, " "), took, step.bound)
				}
				if step.args[0] == "status" && !strings.Contains(p.stdout.String(), "is free") {
					t.Errorf("dlock status: %q; want the key free", p.stdout.String())
				}
			}
		})
	}
}
