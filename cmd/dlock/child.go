//go:build unix

package main

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// A child is the supervised command. It runs in a process group of its own,
// whose id is its pid, so that dlock can signal everything it started.
type child struct {
	pid   int
	done  chan struct{} // closed when the child has exited and was reaped
	state *os.ProcessState

	termSent time.Time // when the group got SIGTERM from dlock; zero if not
}

// startChild starts argv with env added to dlock's environment.
//
// The child is started from a goroutine locked to its OS thread, which
// stays alive until the child is reaped: on Linux the child's parent-death
// signal is tied to the thread that forked it, not to the process.
func startChild(argv, env []string, stdout, stderr io.Writer) (*child, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = os.Stdin
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = sysProcAttr()
	// When stdout is not a file, Wait copies the child's output; a
	// grandchild that keeps the pipe open must not hold dlock forever.
	cmd.WaitDelay = time.Second

	c := &child{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		c.pid = cmd.Process.Pid
		started <- nil
		cmd.Wait() // the exit status is in ProcessState; I/O errors do not matter here
		c.state = cmd.ProcessState
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return c, nil
}

// startCode is the exit status for a command that could not be started,
// as shells use them: 127 if it was not found, 126 otherwise.
func startCode(err error) int {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return exitNotFound
	}
	return exitCannotExec
}

// exitCode is the child's exit status, or 128+N if signal N killed it, as
// shells report it. Valid once done is closed.
func (c *child) exitCode() int {
	if c.state == nil {
		return exitCannotExec
	}
	if ws, ok := c.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return c.state.ExitCode()
}

// signal sends sig to the child's process group, as dlock's own decision.
// Only the goroutine that supervises the child calls it.
func (c *child) signal(sig syscall.Signal) {
	if sig == syscall.SIGTERM && c.termSent.IsZero() {
		c.termSent = time.Now()
	}
	c.forward(sig)
}

// forward sends sig to the child's process group. It is safe to call from
// any goroutine.
func (c *child) forward(sig syscall.Signal) {
	syscall.Kill(-c.pid, sig) // ESRCH: the group is gone already
}

// groupAlive reports whether any process of the child's group still runs.
func (c *child) groupAlive() bool { return groupAlive(c.pid) }

// supervise waits until the child exits. If stop closes first, it sends
// SIGTERM to the child's process group, and SIGKILL grace later if the
// child is still there; onStop is called before the SIGTERM. After the
// child exits, processes it left in its group get the same treatment, so
// that nothing it started outlives the lock. supervise reports whether stop
// closed while the child ran.
//
// Signals that dlock receives reach the group through the signal router,
// not here, and do not start the grace period: the child decides what they
// mean.
func (c *child) supervise(stop <-chan struct{}, grace time.Duration, onStop func(), logf func(string, ...any)) (stopped bool) {
	var kill *time.Timer
	var killC <-chan time.Time
	defer func() {
		if kill != nil {
			kill.Stop()
		}
	}()
wait:
	for {
		select {
		case <-c.done:
			break wait
		case <-stop:
			stop, stopped = nil, true
			onStop()
			c.signal(syscall.SIGTERM)
			kill = time.NewTimer(grace)
			killC = kill.C
		case <-killC:
			killC = nil
			logf("still running %v after SIGTERM; sending SIGKILL", grace)
			c.signal(syscall.SIGKILL)
		}
	}
	c.sweep(grace, logf)
	return stopped
}

// sweep ends what is left of the child's process group after the child
// exited: SIGTERM, then SIGKILL when the grace period (counted from the
// first SIGTERM) is over. There is no event for the death of processes
// that are not our children, so it polls, briefly.
func (c *child) sweep(grace time.Duration, logf func(string, ...any)) {
	if !c.groupAlive() {
		return
	}
	if c.termSent.IsZero() {
		logf("the command left processes in its group; sending them SIGTERM")
		c.signal(syscall.SIGTERM)
	}
	deadline := c.termSent.Add(grace)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	killed := false
	for c.groupAlive() {
		if !killed && !time.Now().Before(deadline) {
			logf("processes left in the command's group after %v; sending SIGKILL", grace)
			c.signal(syscall.SIGKILL)
			killed = true
			deadline = time.Now().Add(time.Second) // SIGKILL is quick
		} else if killed && !time.Now().Before(deadline) {
			return
		}
		<-tick.C
	}
}
