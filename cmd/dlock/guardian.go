//go:build unix

package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dlock-go/dlock/internal/leasetime"
)

// guardianCmd is the hidden subcommand with which dlock re-executes itself
// as the guardian of a job:
//
//	dlock __guardian GRACE DEADLINE_GRACE KILL_LEAD MAX_LEAD DEADLINE CTL_FD -- CMD [ARG...]
//
// The guardian stands between dlock and the job so that the job's whole
// process tree is contained, however dlock ends. It
//
//   - is a child subreaper on Linux, so every process the job starts, even
//     one that double-forks or calls setsid, stays its descendant;
//   - starts the job in a process group of its own, with a parent-death
//     signal (SIGKILL) tied to the guardian;
//   - keeps the lease's deadline itself, sent by dlock each time a renewal
//     moves it, and sends the job's group SIGTERM once the time left is no
//     more than DEADLINE_GRACE and every descendant SIGKILL KILL_LEAD before
//     the deadline, even when dlock is stopped (SIGSTOP) or busy;
//   - kills every descendant at once when dlock dies: its control pipe
//     reads end-of-file, whatever killed dlock (kill -9, the OOM killer);
//   - after the job exits, ends what it left (SIGTERM, SIGKILL GRACE later,
//     and never later than the deadline), then reports that nothing is left.
//
// DEADLINE is on the clock of [monoNow], shared by both processes. The
// guardian reads commands from descriptor CTL_FD and writes reports to
// CTL_FD+1, one line each (see the guard* constants). The descriptors below
// CTL_FD are those dlock inherited: they reach the job as they are.
const guardianCmd = "__guardian"

// Commands, from dlock to the guardian.
const (
	guardDeadline = 'D' // D <mono ns>: the lease's local deadline moved
	guardStop     = 'T' // T: stop the job: SIGTERM now, SIGKILL after the grace period
	guardSignal   = 'S' // S <signo>: forward a signal to the job's group
)

// Reports, from the guardian to dlock.
const (
	guardContainment = 'G' // G cgroup <path> | G scan <why>: how the job is contained; before P
	guardStarted     = 'P' // P <pid>: the job started
	guardFailed      = 'E' // E <exit status> <message>: the job could not start
	guardExited      = 'X' // X <status>: the job exited, with that status (128+N for signal N)
	guardLeftovers   = 'L' // L: the job exited and left processes; they got SIGTERM
	guardLeadCut     = 'w' // w <scan ns> <lead ns>: the kill lead a scan needs does not fit the TTL
	guardTermed      = 't' // t <ns left>: SIGTERM sent because the deadline is near
	guardKilled      = 'k' // k <ns left> deadline|grace: SIGKILL sent to the whole tree, and why
	guardClean       = 'C' // C: the job and every descendant are gone
)

// guardian is the state of the guardian process.
type guardian struct {
	grace    time.Duration // SIGTERM to SIGKILL, when dlock stops the job or it left processes
	dlGrace  time.Duration // SIGTERM this long before the deadline
	killLead time.Duration // SIGKILL this long before the deadline
	maxLead  time.Duration // ... and no longer, or a slow renewal gets there (see schedule)
	leadCut  bool          // the lead a scan needs was cut to maxLead, and dlock told
	deadline time.Time     // the lease's local deadline, when set; see dl
	slept    time.Duration // leasetime.Slept() then
	alarm    *bootTimer

	out      *os.File // reports to dlock
	job      int      // the job's pid and process group
	jobDone  bool
	empty    bool // no child is left (wait4 said ECHILD)
	swept    bool // leftovers after the job's exit got SIGTERM
	orphaned bool // dlock is gone: kill everything and leave
	termSent time.Time
	killing  bool
	killed   time.Time // the last round of SIGKILL

	// cg is the job's cgroup, if the guardian could create one. Without
	// it, the job's processes are found by scanning /proc: known holds
	// those found by the last scan (pidfds, which a reused pid cannot
	// fool), scanned when, and scanCost is the longest a scan took. With
	// it, scans near the deadline find the processes that left the
	// cgroup (root may move a process anywhere), which cgroup.kill misses.
	cg       *jobCgroup
	known    map[int]knownProc
	termed   map[int]bool // known processes that got SIGTERM of their own
	scanned  time.Time
	scanCost time.Duration
	lastScan time.Duration   // how long the last scan took: it started at scanned-lastScan
	scans    chan scanResult // from the scan in the background, if scanning
	scanning bool
}

// A scanResult is the job's processes found by a scan of /proc, with a
// handle on each.
type scanResult struct {
	ps       []procInfo
	handles  map[int]knownProc
	at       time.Time
	duration time.Duration
}

// A knownProc is a process of the job that a scan found.
type knownProc struct {
	h    *os.Process // a pidfd: signals reach this process or none
	pgid int
}

// scan finds the guardian's descendants and opens a handle on each.
func scan() scanResult {
	start := time.Now()
	ps := descendants(os.Getpid())
	r := scanResult{ps: ps, handles: make(map[int]knownProc, len(ps)), at: time.Now()}
	r.duration = r.at.Sub(start)
	for _, p := range ps {
		if h := pidHandle(p); h != nil {
			r.handles[p.pid] = knownProc{h, p.pgid}
		}
	}
	return r
}

// startScan starts a scan in the background, unless one runs: the loop
// must not wait for a scan while a kill is due.
func (g *guardian) startScan() {
	if g.scanning || !subreaper {
		return
	}
	g.scanning = true
	go func() { g.scans <- scan() }()
}

// noteScan records how long a scan took, and tells dlock once if the kill
// lead it calls for does not fit.
func (g *guardian) noteScan(d time.Duration) {
	g.scanCost = max(g.scanCost, d)
	if g.cg == nil && 2*g.scanCost > g.maxLead && !g.leadCut {
		g.leadCut = true
		g.report(guardLeadCut, "%d %d", int64(g.scanCost), int64(g.lead()))
	}
}

// install records the result of a scan. Without a cgroup, processes it
// found after SIGTERM was sent get theirs.
func (g *guardian) install(r scanResult) {
	g.scanning = false
	for _, k := range g.known {
		k.h.Release()
	}
	g.known, g.scanned, g.lastScan = r.handles, r.at, r.duration
	g.noteScan(r.duration)
	if g.cg == nil && !g.termSent.IsZero() && !g.killing {
		g.termKnown()
	}
}

// termKnown sends SIGTERM to the known processes that have had none, but
// those of the job's process group while it gets the group's.
func (g *guardian) termKnown() {
	if g.termed == nil {
		g.termed = make(map[int]bool)
	}
	byGroup := !g.jobDone // with a subreaper; see signalGroup
	for pid, k := range g.known {
		if !g.termed[pid] && (!byGroup || k.pgid != g.job) {
			g.termed[pid] = true
			k.h.Signal(syscall.SIGTERM)
			k.h.Signal(syscall.SIGCONT) // see signalTree
		}
	}
}

// guardianMain is the guardian's main; args follow guardianCmd.
func guardianMain(args []string) int {
	// The job's parent-death signal is tied to the thread that forked it:
	// keep this goroutine on its thread for the guardian's whole life.
	runtime.LockOSThread()
	if len(args) < 8 || args[6] != "--" {
		fmt.Fprintln(os.Stderr, "dlock: the guardian is started by dlock run and dlock elect only")
		return exitUsage
	}
	g, ctlFD, ok := parseGuardian(args)
	if !ok {
		return exitUsage
	}
	argv := args[7:]

	syscall.CloseOnExec(ctlFD)
	syscall.CloseOnExec(ctlFD + 1)
	in := os.NewFile(uintptr(ctlFD), "dlock-control")
	g.out = os.NewFile(uintptr(ctlFD+1), "dlock-reports")
	setSubreaper()
	g.alarm = newBootTimer()
	chld, ignored := catchSignals()
	if !g.start(argv) {
		return 0
	}
	cmds := make(chan string)
	go func() {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			cmds <- sc.Text()
		}
		close(cmds)
	}()
	return g.loop(cmds, chld, ignored)
}

// parseGuardian reads the guardian's arguments before "--": grace,
// deadline grace, kill lead, its maximum, the deadline on the monotonic
// clock, and the control fd (its reports go to the next one).
func parseGuardian(args []string) (g *guardian, ctlFD int, ok bool) {
	g = &guardian{}
	var err error
	for i, d := range []*time.Duration{&g.grace, &g.dlGrace, &g.killLead, &g.maxLead} {
		if *d, err = time.ParseDuration(args[i]); err != nil {
			return nil, 0, false
		}
	}
	dl, err := strconv.ParseInt(args[4], 10, 64)
	if err != nil {
		return nil, 0, false
	}
	g.setDeadline(fromMono(dl))
	ctlFD, err = strconv.Atoi(args[5])
	if err != nil || ctlFD < 3 {
		return nil, 0, false
	}
	return g, ctlFD, true
}

// catchSignals catches the signals the guardian receives. Signals sent
// to the guardian are not its business: it obeys dlock only, and ends
// when dlock does. It catches them instead of ignoring them so that the
// job starts with their default actions; signals ignored when dlock
// started stay ignored (nohup). SIGCHLD comes on chld.
func catchSignals() (chld, ignored chan os.Signal) {
	ignored = make(chan os.Signal, 4)
	for _, s := range []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGPIPE} {
		if !signal.Ignored(s) {
			signal.Notify(ignored, s)
		}
	}
	chld = make(chan os.Signal, 1)
	signal.Notify(chld, syscall.SIGCHLD)
	return chld, ignored
}

// start starts the job, contained in a cgroup of its own if it can be,
// and reports how; it reports false if the job could not start (which it
// reported to dlock).
func (g *guardian) start(argv []string) bool {
	cg, why := newJobCgroup()
	cmd, err := startJob(argv, cg)
	if err != nil && cg != nil && !commandFault(err) {
		// clone3 may refuse the cgroup (a kernel before 5.7, a cgroup
		// that takes no processes): contain the job without it.
		cg.remove()
		cg, why = nil, err
		cmd, err = startJob(argv, nil)
	}
	if err != nil {
		if cg != nil {
			cg.remove()
		}
		g.report(guardFailed, "%d %s", startCode(err), oneLine(err.Error())) // 71 if the guardian lacked resources
		return false
	}
	g.cg = cg
	if cg != nil {
		g.report(guardContainment, "cgroup %s", cg.path)
	} else {
		g.report(guardContainment, "scan %s", oneLine(why.Error()))
	}
	g.job = cmd.Process.Pid // reaped by wait4 in loop, not by cmd.Wait
	raisePriority()
	g.report(guardStarted, "%d", g.job)
	g.scans = make(chan scanResult, 1)
	if cg == nil && subreaper {
		g.install(scan()) // the kill lead needs the scan's cost from the start
	} else {
		g.startScan() // when to scan for processes that left the cgroup
	}
	return true
}

// startJob starts the job in a process group of its own, in cg if not nil.
func startJob(argv []string, cg *jobCgroup) (*exec.Cmd, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = jobSysProcAttr(cg)
	return cmd, cmd.Start()
}

// commandFault reports whether the job could not start because of the
// command itself (not found, not executable), which no other way of
// starting it would change.
func commandFault(err error) bool {
	for _, e := range []error{exec.ErrNotFound, syscall.ENOENT, syscall.EACCES, syscall.ENOEXEC, syscall.ENOTDIR, syscall.E2BIG} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// loop runs the guardian until the job's tree is gone.
func (g *guardian) loop(cmds <-chan string, chld, ignored <-chan os.Signal) int {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		g.reap()
		if g.jobDone && g.treeGone() {
			if g.cg != nil {
				g.cg.removeWhenEmpty(time.Second)
			}
			if !g.orphaned {
				g.report(guardClean, "")
			}
			return 0
		}
		now := time.Now()
		g.act(now)
		d := g.nextWake(now)
		timer.Reset(max(d, 0))
		g.alarm.set(max(d, time.Nanosecond))
		select {
		case line, ok := <-cmds:
			if !ok {
				g.orphaned, g.killing = true, true
				cmds = nil
				continue
			}
			g.command(line)
		case r := <-g.scans:
			g.install(r)
		case <-guardianWake:
		case <-chld:
		case <-ignored:
		case <-timer.C:
		}
	}
}

// act sends what is due at now: SIGTERM to leftovers of a job that
// ended, SIGTERM at the deadline's grace, and SIGKILL from killAt on,
// again every killEvery until the tree is gone.
func (g *guardian) act(now time.Time) {
	if g.jobDone && !g.swept && g.termSent.IsZero() {
		g.swept = true
		g.report(guardLeftovers, "")
		g.term(now)
	}
	if g.termSent.IsZero() && !now.Before(g.dl().Add(-g.dlGrace)) {
		g.report(guardTermed, "%d", int64(g.dl().Sub(now)))
		g.term(now)
	}
	if !g.killing && !now.Before(g.killAt()) {
		g.killing = true
		why := "grace"
		if !g.dl().Add(-g.lead()).After(now) {
			why = "deadline"
		}
		g.report(guardKilled, "%d %s", int64(g.dl().Sub(now)), why)
	}
	if g.killing && time.Since(g.killed) >= g.killEvery() {
		g.signalTree(syscall.SIGKILL)
		g.killed = time.Now()
	}
}

// nextWake returns how long the loop may sleep after acting at now: until
// the next signal is due, or the next scan for processes to kill, which it
// starts once it is due.
func (g *guardian) nextWake(now time.Time) time.Duration {
	wake := g.killAt()
	if g.termSent.IsZero() {
		wake = g.dl().Add(-g.dlGrace)
	}
	d := time.Until(wake)
	if g.killing {
		// Until the tree is gone, SIGKILL again now and then: the
		// loop must not spin, the dying need the CPU to exit.
		d = g.killEvery() - time.Since(g.killed)
	} else if g.jobDone {
		// Processes that are not our children have no event for
		// their death: look again soon.
		d = min(d, 10*time.Millisecond)
	} else if g.cg != nil {
		// The processes that left the cgroup get SIGKILL at
		// killAt if a scan found them: one scan that starts as
		// late as it can and still ends before then.
		from := g.killAt().Add(-2*g.scanCost - 20*time.Millisecond)
		if now.Before(from) {
			d = min(d, time.Until(from))
		} else if g.scanned.Add(-g.lastScan).Before(from) {
			g.startScan()
		}
	} else {
		// The kill at killAt starts with the processes known
		// then: keep the set fresh from a while before it.
		every := max(20*time.Millisecond, 4*g.scanCost)
		if from := g.killAt().Add(-2 * every); g.termSent.IsZero() && time.Now().Before(from) {
			d = min(d, time.Until(from))
		} else if since := time.Since(g.scanned); since >= every {
			g.startScan()
			d = min(d, every)
		} else {
			d = min(d, every-since)
		}
	}
	return d
}

// setDeadline records the lease's local deadline.
func (g *guardian) setDeadline(t time.Time) {
	g.deadline, g.slept = t, leasetime.Slept()
}

// dl is the lease's local deadline, less the time the machine has been
// suspended since it was set: the monotonic clock stood still meanwhile,
// the backend's expiry did not.
func (g *guardian) dl() time.Time {
	if s := leasetime.Slept() - g.slept; s >= leasetime.MinSleep {
		return g.deadline.Add(-s)
	}
	return g.deadline
}

// guardianWake wakes the guardian's loop when the time it waits for has
// come on CLOCK_BOOTTIME (see bootTimer): the loop's own timer, on the
// monotonic clock, does not count a suspend, after which the deadline
// may have passed long ago.
var guardianWake = make(chan struct{}, 1)

// killAt is when the whole tree gets SIGKILL: the lease's deadline less
// what the kill needs to land, or the end of the grace period after a
// SIGTERM, whichever comes first.
func (g *guardian) killAt() time.Time {
	at := g.dl().Add(-g.lead())
	if !g.termSent.IsZero() && g.termSent.Add(g.grace).Before(at) {
		at = g.termSent.Add(g.grace)
	}
	return at
}

// killEvery is how often the tree gets SIGKILL again until it is gone:
// a process may have forked meanwhile, or, without a cgroup, escaped the
// last scan. A scan costs, and may not take most of the time.
func (g *guardian) killEvery() time.Duration {
	if g.cg != nil {
		return 10 * time.Millisecond
	}
	return max(10*time.Millisecond, 2*g.scanCost)
}

// lead is how long before the deadline the tree gets SIGKILL. cgroup.kill
// takes no time to reach every process; without a cgroup, the kill that
// follows the signals to the known processes scans /proc, and the lead is
// at least twice the longest scan yet.
func (g *guardian) lead() time.Duration {
	if g.cg != nil {
		return g.killLead
	}
	return max(g.killLead, min(2*g.scanCost, g.maxLead))
}

func (g *guardian) command(line string) {
	if line == "" {
		return
	}
	arg := strings.TrimSpace(line[1:])
	switch line[0] {
	case guardDeadline:
		if ns, err := strconv.ParseInt(arg, 10, 64); err == nil {
			g.setDeadline(fromMono(ns))
		}
	case guardStop:
		if g.termSent.IsZero() {
			g.term(time.Now())
		}
	case guardSignal:
		if n, err := strconv.Atoi(arg); err == nil {
			g.signalGroup(syscall.Signal(n))
		}
	}
}

// signalGroup sends sig to the job's process group. Once the job is
// reaped, its pid, the group's id, may be taken by an unrelated process
// when the group is empty: then the members the guardian can still find
// among its descendants get sig one by one. (Without a subreaper they
// cannot all be found; the group itself is signalled.)
func (g *guardian) signalGroup(sig syscall.Signal) {
	if !g.jobDone || !subreaper {
		syscall.Kill(-g.job, sig)
		return
	}
	for _, p := range g.members() {
		if p.pgid == g.job {
			syscall.Kill(p.pid, sig)
		}
	}
}

// members returns the job's living processes: those in its cgroup, or
// else the guardian's descendants, which takes a scan of /proc.
func (g *guardian) members() []procInfo {
	if g.cg != nil {
		return procInfos(g.cg.pids())
	}
	if !subreaper {
		return descendants(os.Getpid())
	}
	r := scan()
	for _, k := range r.handles {
		k.h.Release() // the background scans keep g.known
	}
	g.noteScan(r.duration)
	return r.ps
}

// term sends SIGTERM to the job's group and to every descendant outside
// it, and starts the grace period.
func (g *guardian) term(now time.Time) {
	g.termSent = now
	g.signalTree(syscall.SIGTERM)
}

// signalTree sends sig to the job's process group and to every other
// descendant of the guardian. SIGTERM is followed by SIGCONT, as systemd
// sends it: a stopped process (SIGSTOP) runs its handler only once
// continued, and would otherwise stay stopped until SIGKILL.
//
// SIGKILL goes first where it takes no scan: to the cgroup (cgroup.kill)
// or to the processes the last scan found.
func (g *guardian) signalTree(sig syscall.Signal) {
	byGroup := !g.jobDone || !subreaper // see signalGroup
	if sig == syscall.SIGKILL {
		if g.cg != nil {
			g.cg.kill()
			hurry(g.cg.pids())
		}
		for pid, k := range g.known {
			k.h.Signal(sig)
			hurry([]int{pid})
		}
	}
	if byGroup {
		syscall.Kill(-g.job, sig)
		if sig == syscall.SIGTERM {
			syscall.Kill(-g.job, syscall.SIGCONT)
		}
	}
	if sig == syscall.SIGTERM && g.cg == nil && subreaper {
		// A scan would hold up the loop while a kill may be due: the
		// processes the last scan found get SIGTERM now, those the
		// next one finds when it ends (see install).
		g.termKnown()
		g.startScan()
		return
	}
	members := g.members()
	if g.cg != nil && g.killing && !g.empty && !g.cg.populated() {
		// A process that left the cgroup is still a descendant.
		members = descendants(os.Getpid())
	}
	for _, p := range members {
		if !byGroup || p.pgid != g.job || sig == syscall.SIGKILL {
			syscall.Kill(p.pid, sig)
			if sig == syscall.SIGTERM {
				syscall.Kill(p.pid, syscall.SIGCONT)
			}
		}
	}
}

// reap collects exited children: the job, and the orphans the guardian
// adopted as a subreaper.
func (g *guardian) reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil: // ECHILD: no child left
			g.empty = true
			return
		case pid <= 0:
			g.empty = false
			return
		}
		if pid == g.job && !g.jobDone {
			g.jobDone = true
			code := ws.ExitStatus()
			if ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
			g.report(guardExited, "%d", code)
		}
	}
}

// treeGone reports whether nothing of the job is left. With a subreaper
// (Linux), every descendant is a child of the guardian once its parent
// exits, so no child left means no descendant left; elsewhere orphans go
// to init, and only the job's group can be checked.
func (g *guardian) treeGone() bool {
	if !g.empty {
		return false
	}
	return subreaper || !groupAlive(g.job)
}

func (g *guardian) report(kind byte, format string, args ...any) {
	if g.orphaned {
		return
	}
	// A failed write means dlock is gone; the control pipe says so too.
	fmt.Fprintf(g.out, "%c %s\n", kind, fmt.Sprintf(format, args...))
}

// oneLine keeps a message on one line of the report pipe.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// fromMono converts a reading of monoNow to a time of this process.
func fromMono(ns int64) time.Time {
	return time.Now().Add(time.Duration(ns - monoNow()))
}

// toMono converts t to a reading of monoNow, for another process.
func toMono(t time.Time) int64 {
	return monoNow() + int64(time.Until(t))
}
