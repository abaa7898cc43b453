package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunPassesInheritedFDs: descriptors dlock inherits above stderr
// (a shell's 3>file, systemd's sockets) reach the job with their numbers,
// 3 and 4 included, as flock(1) passes them; the guardian's control pipes
// take none of them.
func TestRunPassesInheritedFDs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	job := `for fd in 3 4 5 7; do echo "fd $fd" >&$fd || exit 1; done`
	sh := `exec 3>"$D/f3" 4>"$D/f4" 5>"$D/f5" 7>"$D/f7"; exec "$DLOCK" run --url mem:// --key fds -- sh -c '` + job + `'`
	cmd := exec.Command("sh", "-c", sh)
	cmd.Env = append(cmd.Environ(), "D="+dir, "DLOCK="+dlockBin, "GORACE=atexit_sleep_ms=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dlock run: %v\n%s", err, out)
	}
	for _, fd := range []string{"3", "4", "5", "7"} {
		if got := strings.TrimSpace(readFile(t, filepath.Join(dir, "f"+fd))); got != "fd "+fd {
			t.Errorf("the job's write to fd %s reached the file as %q, want %q", fd, got, "fd "+fd)
		}
	}
}
