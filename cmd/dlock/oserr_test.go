//go:build unix

package main

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestRunOwnFailureExits71: dlock run under a descriptor limit too low
// for its guardian's pipes fails with EX_OSERR (71) and a message that
// says dlock failed, not the command: 126 would tell the caller that the
// command could not be executed.
func TestRunOwnFailureExits71(t *testing.T) {
	t.Parallel()
	var own int
	for n := 6; n <= 12; n++ {
		cmd := exec.Command("sh", "-c", "ulimit -n "+strconv.Itoa(n)+`; exec "$DLOCK" run --url mem:// --key k -- true`)
		cmd.Env = append(cmd.Environ(), "DLOCK="+dlockBin, "GORACE=atexit_sleep_ms=0")
		out, _ := cmd.CombinedOutput()
		code := cmd.ProcessState.ExitCode()
		switch {
		case code == 0:
		case code == exitOSError:
			own++
			if !strings.Contains(string(out), "dlock run: cannot start \"true\": dlock failed, not the command: ") {
				t.Errorf("ulimit -n %d: exit status 71 without a message naming dlock's failure:\n%s", n, out)
			}
		case code == 2 && strings.Contains(string(out), "fatal error: runtime:"):
			// The Go runtime itself needs a few descriptors to start.
		default:
			t.Errorf("ulimit -n %d: exit status %d, want 71 (dlock's own failure) or 0:\n%s", n, code, out)
		}
	}
	if own == 0 {
		t.Error("no descriptor limit made dlock's own start fail: the test checks nothing")
	}
}
