package main

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// pipeQueued returns the bytes waiting in the pipe that pid has open as
// fd, read with FIONREAD on a second opening of it through /proc.
func pipeQueued(t *testing.T, pid, fd int) int {
	t.Helper()
	f, err := os.OpenFile("/proc/"+strconv.Itoa(pid)+"/fd/"+strconv.Itoa(fd), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TIOCINQ, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatal(e)
	}
	return int(n)
}

// shrinkPipe sets the capacity of the pipe that pid has open as fd to
// size bytes (F_SETPIPE_SZ on a second opening of it through /proc) and
// returns the capacity the kernel chose.
func shrinkPipe(t *testing.T, pid, fd, size int) int {
	t.Helper()
	f, err := os.OpenFile("/proc/"+strconv.Itoa(pid)+"/fd/"+strconv.Itoa(fd), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const fSetPipeSz = 1031 // F_SETPIPE_SZ
	n, _, e := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), fSetPipeSz, uintptr(size))
	if e != 0 {
		t.Fatalf("F_SETPIPE_SZ: %v", e)
	}
	return int(n)
}

// TestRunSignalNotLostInStorm: while dlock cannot pass signals on (its
// guardian is stopped, and the command pipe to it is full), a storm of
// SIGUSR1/SIGUSR2 comes, then one SIGTERM. Once the guardian runs again,
// the SIGTERM must still reach the job: it was dropped when dlock's one
// signal channel was full, and the job ran on.
func TestRunSignalNotLostInStorm(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	job := script(t, dir, "job.sh", `
trap '' USR1 USR2 QUIT
trap 'echo term > "$D/term"; exit 0' TERM
echo $$ > "$D/pid"
while :; do sleep 0.05; done
`)
	p := startDlock(t, "run", []string{"D=" + dir}, "run", "--url", "mem://", "--key", "k", "--ttl", "10m", "--", job)
	waitFor(t, 20*time.Second, "the job to start", func() bool { return readFile(t, filepath.Join(dir, "pid")) != "" })
	jobPID := readPIDs(t, dir, "pid")[0]
	guardian := parentPID(t, jobPID)
	if err := syscall.Kill(guardian, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(guardian, syscall.SIGCONT) })
	dlockPID := p.cmd.Process.Pid
	// Fill the command pipe: each forwarded signal is one short line. The
	// pipe is shrunk to one page first, so that it fills in seconds even
	// on a loaded machine (64 KiB took up to a minute).
	size := shrinkPipe(t, guardian, 3, 4096)
	waitFor(t, 60*time.Second, "the guardian's command pipe to fill", func() bool {
		for range 50 {
			syscall.Kill(dlockPID, syscall.SIGUSR1)
			syscall.Kill(dlockPID, syscall.SIGUSR2)
		}
		return pipeQueued(t, guardian, 3) > size-64
	})
	// dlock is stuck passing one on; more of them queue up behind it.
	for range 100 {
		syscall.Kill(dlockPID, syscall.SIGUSR1)
		syscall.Kill(dlockPID, syscall.SIGUSR2)
		syscall.Kill(dlockPID, syscall.SIGQUIT)
		time.Sleep(time.Millisecond) // each one delivered, not merged with the next
	}
	syscall.Kill(dlockPID, syscall.SIGTERM)
	time.Sleep(50 * time.Millisecond) // delivered to dlock before the guardian resumes
	syscall.Kill(guardian, syscall.SIGCONT)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("dlock run still runs 30s after SIGTERM: the signal was lost (job got SIGTERM: %v)", readFile(t, filepath.Join(dir, "term")) != "")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 || readFile(t, filepath.Join(dir, "term")) == "" {
		t.Errorf("exit status %d, term file %q; want the job to get SIGTERM and exit 0", code, readFile(t, filepath.Join(dir, "term")))
	}
}
