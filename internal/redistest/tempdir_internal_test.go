package redistest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// TestTempDirSweepsDeadRuns: a test binary killed (SIGKILL, or the panic
// of a test timeout, which runs no cleanup) left its redistest-* directory
// in $TMPDIR, and every such run added one. The next run removes the
// directories of runs whose process is gone, and only those.
func TestTempDirSweepsDeadRuns(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)

	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPid := strconv.Itoa(dead.Process.Pid)
	stale := filepath.Join(tmp, "redistest-"+deadPid+"-1")
	live := filepath.Join(tmp, "redistest-"+strconv.Itoa(os.Getppid())+"-1") // the go command: alive
	other := filepath.Join(tmp, "redistest-notours")
	for _, d := range []string{stale, live, other} {
		if err := os.MkdirAll(filepath.Join(d, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	var l lifetime
	dir := l.tempDir()
	defer l.run()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the directory of a dead run (pid %s) is still there: %v", deadPid, err)
	}
	for _, d := range []string{live, other, dir} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s removed: %v", d, err)
		}
	}
	if want := "redistest-" + strconv.Itoa(os.Getpid()) + "-"; filepath.Base(dir)[:len(want)] != want {
		t.Errorf("tempDir = %s; want a name that starts with %s, so that a later run can tell whether this one is alive", dir, want)
	}
}
