package main

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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

// TestRunKeepsInheritedFDNonblocking: a descriptor dlock inherits in
// non-blocking mode reaches the job in that mode (Go's exec puts the files
// it passes in blocking mode, and the mode belongs to the file, shared
// with whoever else holds it).
func TestRunKeepsInheritedFDNonblocking(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("perl"); err != nil {
		t.Fatal("perl, which sets the descriptor's mode, is not installed")
	}
	dir := t.TempDir()
	// perl makes fd 3 a pipe (which Go's poller takes, unlike a file),
	// non-blocking, and starts dlock; the job prints the flags of its fd 3.
	cmd := exec.Command("perl", "-e", `$^F = 10; use Fcntl; use POSIX; pipe(my $r, my $f) or die; POSIX::dup2(fileno($f), 3) or die;
open(my $g, ">&=", 3) or die; fcntl($g, F_SETFL, fcntl($g, F_GETFL, 0) | O_NONBLOCK) or die; exec @ARGV or die`,
		dlockBin, "run", "--url", "mem://", "--key", "nonblock", "--", "sh", "-c", `grep flags /proc/self/fdinfo/3`)
	cmd.Env = append(cmd.Environ(), "D="+dir, "GORACE=atexit_sleep_ms=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dlock run: %v\n%s", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		t.Fatalf("no flags of fd 3 in the job's output: %q", out)
	}
	flags, err := strconv.ParseUint(f[1], 8, 64)
	if err != nil {
		t.Fatal(err)
	}
	if flags&syscall.O_NONBLOCK == 0 {
		t.Errorf("the job's fd 3 has flags %s: not O_NONBLOCK, as dlock got it", f[1])
	}
}
