//go:build unix

package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// The command's own tests run it on mem://, which needs no server; run
// and elect refuse it otherwise (see TestRunRefusesInProcessBackend).
func init() { os.Setenv(envAllowMem, "1") }

// TestRunRefusesInProcessBackend: run and elect on mem:// lock nothing
// across processes (two shells both ran the job), so they refuse it with
// exit 64 and say why; status and demo still take it.
func TestRunRefusesInProcessBackend(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--url", "mem://jobs", "--key", "k", "--", "true"},
		{"elect", "--key", "k", "--", "true"},
	} {
		env := []string{envAllowMem + "="}
		if args[0] == "elect" {
			env = append(env, "DLOCK_URL=MEM://")
		}
		p := startDlock(t, "dlock "+args[0], env, args...)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("dlock %s on mem:// did not exit", args[0])
		}
		if code := p.cmd.ProcessState.ExitCode(); code != exitUsage {
			t.Errorf("dlock %s on mem:// exited %d; want %d", args[0], code, exitUsage)
		}
		if msg := p.stderr.String(); !strings.Contains(msg, "locks nothing against other processes") {
			t.Errorf("dlock %s on mem:// printed %q; want it to say why", args[0], msg)
		}
	}
	if code, _, stderr := runInProcess("status", "--url", "mem://", "k"); code != exitFree {
		t.Errorf("dlock status on mem:// = %d, %q; want %d (free)", code, stderr, exitFree)
	}
}
