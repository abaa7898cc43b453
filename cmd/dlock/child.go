//go:build unix

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// killTiming is when the job is stopped relative to the lease's deadline;
// see schedule.
type killTiming struct {
	grace         time.Duration // SIGTERM to SIGKILL when dlock stops the job, or it left processes
	deadlineGrace time.Duration // SIGTERM this long before the lease's local deadline
	killLead      time.Duration // SIGKILL this long before it
	maxLead       time.Duration // the longest kill lead that a slow renewal does not reach
}

// schedule returns the kill timing for a lease of ttl, renewed every
// renew (0: TTL/3; negative: not at all) with drift allowance drift (0: the
// library's default), and the --grace flag. While renewals succeed, the
// deadline is at least TTL-drift-renew ahead; the SIGTERM must come later
// than a renewal that is merely slow, so --grace is cut to half of that.
// cut reports whether it was.
func schedule(ttl, renew, drift, grace time.Duration) (t killTiming, cut bool) {
	if renew == 0 {
		renew = ttl / 3
	}
	renew = max(renew, 0)
	if drift == 0 {
		drift = ttl/100 + 2*time.Millisecond
	}
	// Signalling the tree takes a moment, but a killed process still
	// needs the CPU to exit, and a loaded machine runs it, and wakes the
	// guardian, late: 20-40ms at a load of 16 on 2 cores, and up to 55ms
	// for a tree under cgroup.kill while the test suite runs beside it.
	t.killLead = min(max(ttl/5, time.Millisecond), 200*time.Millisecond)
	limit := max((ttl-drift-renew)/2, t.killLead)
	t.grace = grace
	t.deadlineGrace = min(grace, limit)
	t.maxLead = limit
	return t, grace > limit
}

// A child is the supervised job, run by a guardian process (see
// guardianCmd). Its process group's id is its pid.
type child struct {
	pid      int
	guardian *exec.Cmd
	ctl      *os.File // commands to the guardian
	lg       *cliLog
	cmd      string // the job, for messages
	cmdAttr  slog.Attr

	kill killTiming
	cg   *jobCgroup // the job's cgroup, if it has one (path only)

	mu   sync.Mutex    // serializes commands
	done chan struct{} // closed when the job has exited
	gone chan struct{} // closed when the job's whole tree is gone and the guardian exited

	clean    bool        // the guardian reported the tree gone
	killSent atomic.Bool // the guardian reported SIGKILL to the tree
	enforced atomic.Bool // dlock killed the guardian and the tree at the deadline (see enforce)

	// Valid once gone is closed:
	status      int  // the job's exit status (once done is closed)
	deadlineHit bool // the guardian signalled the tree because renewal was not confirmed in time
	jobStopped  bool // ... and did so while the job itself still ran
}

// inherited holds the descriptors dlock inherited (see inheritedFDs) as
// files, for as long as dlock runs: a file that is collected closes its
// descriptor.
var inherited struct {
	sync.Mutex
	files map[int]*os.File
}

// inheritedFiles returns what becomes the guardian's ExtraFiles for the
// descriptors dlock inherited: entry i is descriptor 3+i if dlock inherited
// it, nil (closed in the guardian) otherwise.
func inheritedFiles() []*os.File {
	fds := inheritedFDs()
	if len(fds) == 0 {
		return nil
	}
	inherited.Lock()
	defer inherited.Unlock()
	if inherited.files == nil {
		inherited.files = make(map[int]*os.File)
	}
	extra := make([]*os.File, fds[len(fds)-1]-2)
	for _, fd := range fds {
		f := inherited.files[fd]
		if f == nil {
			f = os.NewFile(uintptr(fd), "inherited-"+strconv.Itoa(fd))
			inherited.files[fd] = f
		}
		extra[fd-3] = f
	}
	return extra
}

// startFailure is the guardian's report that the job could not start.
type startFailure struct {
	code int
	msg  string
}

func (e *startFailure) Error() string {
	if e.code == exitOSError {
		return "dlock's guardian failed, not the command: " + e.msg
	}
	return e.msg
}

// ownFailure is dlock's own failure to start a command (no descriptors or
// processes left, say): not the command's, which could not even be tried.
// It exits with EX_OSERR.
type ownFailure struct{ err error }

func (e *ownFailure) Error() string { return "dlock failed, not the command: " + e.err.Error() }
func (e *ownFailure) Unwrap() error { return e.err }

// startChild starts argv under a guardian, with env added to dlock's
// environment, the lease's current deadline and the kill timing.
func startChild(argv, env []string, stdout, stderr io.Writer, deadline time.Time, kt killTiming, lg *cliLog) (*child, error) {
	self, err := os.Executable()
	if _, serr := os.Stat("/proc/self/exe"); serr == nil {
		self, err = "/proc/self/exe", nil // still dlock, even if the file was replaced
	}
	if err != nil {
		return nil, &ownFailure{fmt.Errorf("cannot find dlock's own executable for the guardian: %w", err)}
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, &ownFailure{err}
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return nil, &ownFailure{err}
	}
	// The descriptors dlock inherited keep their numbers in the guardian
	// and the job; the control pipes go above them.
	extra := inheritedFiles()
	ctlFD := 3 + len(extra)
	args := append([]string{guardianCmd, kt.grace.String(), kt.deadlineGrace.String(), kt.killLead.String(), kt.maxLead.String(),
		strconv.FormatInt(toMono(deadline), 10), strconv.Itoa(ctlFD), "--"}, argv...)
	g := exec.Command(self, args...)
	g.Args[0] = os.Args[0] // "dlock __guardian …" in ps, not "/proc/self/exe …"
	g.Stdin = os.Stdin
	g.Stdout = stdout
	g.Stderr = stderr
	g.Env = append(os.Environ(), env...)
	g.ExtraFiles = append(extra, ctlR, repW)
	g.SysProcAttr = guardianSysProcAttr()
	// When stdout is not a file, Wait copies the job's output; a process
	// that escaped with the pipe must not hold dlock forever.
	g.WaitDelay = time.Second
	err = g.Start()
	ctlR.Close()
	repW.Close()
	if err != nil {
		ctlW.Close()
		repR.Close()
		return nil, &ownFailure{fmt.Errorf("cannot start the guardian: %w", err)}
	}
	c := &child{guardian: g, ctl: ctlW, lg: lg, cmd: commandString(argv), cmdAttr: slog.String("command", strings.Join(argv, " ")),
		kill: kt, done: make(chan struct{}), gone: make(chan struct{})}
	reports := bufio.NewScanner(repR)
	var kind byte
	var arg string
	for kind == 0 || kind == guardContainment {
		if !reports.Scan() {
			c.finish(repR)
			return nil, &ownFailure{errors.New("the guardian process ended before starting the command")}
		}
		if kind, arg = splitReport(reports.Text()); kind == guardContainment {
			c.noteContainment(arg)
		}
	}
	if kind == guardFailed {
		code, msg, _ := strings.Cut(arg, " ")
		n, _ := strconv.Atoi(code)
		c.finish(repR)
		return nil, &startFailure{n, msg}
	}
	c.pid, _ = strconv.Atoi(arg)
	go c.read(reports, repR)
	return c, nil
}

func splitReport(line string) (byte, string) {
	if line == "" {
		return 0, ""
	}
	return line[0], strings.TrimSpace(line[1:])
}

// read handles the guardian's reports until it exits.
func (c *child) read(reports *bufio.Scanner, r *os.File) {
	for reports.Scan() {
		kind, arg := splitReport(reports.Text())
		switch kind {
		case guardExited:
			c.status, _ = strconv.Atoi(arg)
			close(c.done)
		case guardClean:
			c.clean = true
		case guardLeadCut:
			scanNs, leadNs, _ := strings.Cut(arg, " ")
			sc, _ := strconv.ParseInt(scanNs, 10, 64)
			ld, _ := strconv.ParseInt(leadNs, 10, 64)
			c.lg.log(slog.LevelWarn, fmt.Sprintf("a scan of /proc for the processes of %s took %v; SIGKILL should go out at least twice that before the lease's deadline, but the TTL leaves room for %v only: a longer TTL, or dlock allowed to create cgroups, contains %s in time",
				c.cmd, roundDur(time.Duration(sc)), roundDur(time.Duration(ld)), c.cmd), c.cmdAttr, slog.Duration("scan", time.Duration(sc)), slog.Duration("kill_lead", time.Duration(ld)))
		case guardLeftovers:
			c.lg.log(slog.LevelInfo, fmt.Sprintf("%s exited and left processes behind; sending them SIGTERM", c.cmd), c.cmdAttr)
		case guardTermed:
			c.noteDeadline()
			ns, _ := strconv.ParseInt(arg, 10, 64)
			c.lg.log(slog.LevelWarn, fmt.Sprintf("renewal not confirmed with %v left before the lease's deadline; sending SIGTERM to %s",
				roundDur(time.Duration(ns)), c.cmd), c.cmdAttr, slog.Duration("left", time.Duration(ns)), slog.String("signal", "SIGTERM"))
		case guardKilled:
			c.killSent.Store(true)
			left, why, _ := strings.Cut(arg, " ")
			ns, _ := strconv.ParseInt(left, 10, 64)
			if why == "deadline" {
				c.noteDeadline()
			}
			c.lg.log(slog.LevelWarn, fmt.Sprintf("sending SIGKILL to every process of %s, %v before the lease's deadline", c.cmd, roundDur(time.Duration(ns))),
				c.cmdAttr, slog.Duration("left", time.Duration(ns)), slog.String("signal", "SIGKILL"))
		}
	}
	c.finish(r)
}

// noteContainment records and logs (--verbose) how the guardian contains
// the job: "cgroup PATH" or "scan WHY".
func (c *child) noteContainment(arg string) {
	how, detail, _ := strings.Cut(arg, " ")
	if how == "cgroup" {
		c.cg = &jobCgroup{path: detail}
		c.lg.log(slog.LevelDebug, fmt.Sprintf("containment: %s runs in cgroup %s; its processes are killed with cgroup.kill", c.cmd, detail),
			c.cmdAttr, slog.String("containment", "cgroup"), slog.String("cgroup", detail))
		return
	}
	c.lg.log(slog.LevelDebug, fmt.Sprintf("containment: %s is contained by scanning /proc (no cgroup: %s)", c.cmd, detail),
		c.cmdAttr, slog.String("containment", "scan"), slog.String("reason", detail))
}

// noteDeadline records that the guardian acted on the lease's deadline.
func (c *child) noteDeadline() {
	c.deadlineHit = true
	select {
	case <-c.done:
	default:
		c.jobStopped = true
	}
}

// finish waits for the guardian to exit. If it ended without reporting
// the tree gone (it was killed), what is left of the job gets SIGKILL
// here: its cgroup, its group (the job's parent-death signal has killed
// the job itself), and every other process of the job, which dlock, a
// subreaper too, has adopted.
func (c *child) finish(r *os.File) {
	r.Close()
	c.ctl.Close()
	c.guardian.Wait()
	if !c.clean && c.pid > 0 {
		c.killTree()
		killOrphans()
		if c.cg != nil {
			c.cg.removeWhenEmpty(5 * time.Second)
		}
		if !c.enforced.Load() {
			c.lg.log(slog.LevelError, fmt.Sprintf("the guardian of %s died; every process of it that was left got SIGKILL", c.cmd), c.cmdAttr)
		}
	}
	select {
	case <-c.done:
	default:
		c.status = 128 + int(syscall.SIGKILL)
		close(c.done)
	}
	close(c.gone)
}

// killTree sends SIGKILL to the job's cgroup, if it has one, and group.
func (c *child) killTree() {
	if c.cg != nil {
		c.cg.kill()
	}
	syscall.Kill(-c.pid, syscall.SIGKILL)
}

// enforceIn is how long until dlock enforces the lease's deadline d
// itself: half the kill lead before it, when the guardian should have
// sent SIGKILL already; at the deadline if it did but the tree is not
// gone (the processes may just be slow to exit, or the guardian stopped
// before it could kill them all).
func (c *child) enforceIn(d time.Time) time.Duration {
	if c.killSent.Load() {
		return time.Until(d)
	}
	return time.Until(d) - c.kill.killLead/2
}

// enforce kills the guardian and the job's tree, because the lease's
// deadline is near and the guardian has not reported the tree gone: it
// may be stopped (SIGSTOP, a debugger) or starved. finish, which sees the
// guardian die, kills what the job left.
func (c *child) enforce() {
	c.enforced.Store(true)
	c.lg.log(slog.LevelError, fmt.Sprintf("the guardian of %s has not stopped it by the lease's deadline; dlock kills the guardian and every process of %s", c.cmd, c.cmd),
		c.cmdAttr, slog.String("signal", "SIGKILL"))
	c.killTree()
	c.guardian.Process.Signal(syscall.SIGKILL)
	c.guardian.Process.Signal(syscall.SIGCONT)
}

// send sends a command to the guardian. It is safe to call from any
// goroutine. A failed write means the guardian is gone.
func (c *child) send(kind byte, arg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.ctl, "%c %s\n", kind, arg)
}

// forward sends sig to the job's process group.
func (c *child) forward(sig syscall.Signal) { c.send(guardSignal, strconv.Itoa(int(sig))) }

// setDeadline tells the guardian the lease's local deadline.
func (c *child) setDeadline(t time.Time) { c.send(guardDeadline, strconv.FormatInt(toMono(t), 10)) }

// startCode is the exit status for a command that could not be started,
// as shells use them: 127 if it was not found, 126 otherwise; but 71
// (EX_OSERR) when dlock itself failed, or the system lacked the resources
// to start any command (descriptors, processes, memory).
func startCode(err error) int {
	var sf *startFailure
	switch {
	case errors.As(err, &sf):
		return sf.code
	case errors.As(err, new(*ownFailure)) || outOfResources(err):
		return exitOSError
	case errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist):
		return exitNotFound
	}
	return exitCannotExec
}

// outOfResources reports whether err says the system or dlock ran out of
// what starting a process takes.
func outOfResources(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.EAGAIN, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// awaitLoss waits, after the guardian stopped the job at the lease's
// deadline, until the lease is lost as it then is about to be, and returns
// its error: nil if a late renewal was confirmed after all.
func awaitLoss(done <-chan struct{}, validUntil func() time.Time, err func() error) error {
	t := time.NewTimer(time.Until(validUntil()) + 50*time.Millisecond)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	return err()
}

// exitCode is the job's exit status, or 128+N if signal N killed it, as
// shells report it. Valid once done is closed.
func (c *child) exitCode() int { return c.status }

// supervise waits until the job and everything it started are gone,
// handing each new lease deadline (read with validUntil when renewed
// fires) to the guardian. If stop closes first, the job is stopped:
// onStop is called, then the guardian sends SIGTERM and, after the grace
// period or at the lease's deadline at the latest, SIGKILL. supervise
// reports whether stop closed while the job itself still ran.
//
// Signals that dlock receives reach the group through the signal router,
// not here, and do not start the grace period: the job decides what they
// mean.
//
// At the deadline, less half the kill lead, if the guardian has not
// reported the tree gone, dlock kills the guardian and the tree itself.
func (c *child) supervise(stop, renewed <-chan struct{}, validUntil func() time.Time, onStop func()) (stopped bool) {
	deadline := time.NewTimer(c.enforceIn(validUntil()))
	defer deadline.Stop()
	for {
		select {
		case <-c.gone:
			if c.enforced.Load() {
				c.deadlineHit = true
			}
			return stopped || c.jobStopped
		case <-deadline.C:
			if d := c.enforceIn(validUntil()); d > 0 {
				deadline.Reset(d) // renewed meanwhile
				continue
			}
			select {
			case <-c.done:
			default:
				stopped = true
			}
			c.enforce()
		case <-renewed:
			deadline.Reset(c.enforceIn(validUntil()))
			c.setDeadline(validUntil())
		case <-stop:
			stop = nil
			select {
			case <-c.done:
			default:
				stopped = true
				onStop()
			}
			c.send(guardStop, "")
		}
	}
}

// adopting is set when dlock is a child subreaper (see adoptOrphans).
var adopting bool

// adoptOrphans makes dlock a child subreaper (Linux), for run and elect in
// dlock's own process: if the guardian is killed, the job's processes that
// it had adopted (daemons that called setsid) become dlock's, and
// killOrphans can end them before the key is released.
func adoptOrphans() {
	if subreaper {
		setSubreaper()
		adopting = true
	}
}

// killOrphans sends SIGKILL to every descendant of dlock, after its
// guardian died, and reaps them, for up to 5s. dlock has no other child
// then. It does nothing unless dlock adopts orphans.
func killOrphans() {
	if !adopting {
		return
	}
	tick := time.NewTicker(10 * time.Millisecond) // deaths of non-children have no event
	defer tick.Stop()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); <-tick.C {
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 && err != syscall.EINTR {
				break
			}
		}
		ds := descendants(os.Getpid())
		if len(ds) == 0 {
			return
		}
		for _, p := range ds {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
}
