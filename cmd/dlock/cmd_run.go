//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/dlock-go/dlock"
)

const runUsage = `Usage: dlock run --key K [--url URL] [--ttl 15s] [--wait 0|DURATION|forever]
                 [--grace 10s] [--owner NAME] [-q] [--busy-exit N] [--limit N] -- CMD [ARG...]

Run CMD only while holding the lock K.

With --limit N, K is a semaphore: up to N dlock run on K run their CMD at
once, each with a lease of its own (its own DLOCK_FENCE, greater than every
earlier one on K) and every guarantee below. All of them must give the
same N: a different one is refused while K is held.

dlock acquires K, starts CMD with DLOCK_KEY, DLOCK_FENCE and DLOCK_TOKEN
added to its environment, renews the lease while CMD runs, and releases it
when CMD exits. DLOCK_FENCE grows with every grant of K: pass it along with
writes to a resource that can reject stale holders.

If K is held by someone else, dlock waits as long as --wait says (0: not at
all, the default; a duration such as 30s; or forever), then gives up with
status 75 (or --busy-exit N) and says who holds K, unless --quiet.

The job never outlives the lease. dlock hands the lease's local deadline
(which comes before the backend's expiry, and which each confirmed renewal
moves later) to a guardian process that runs CMD. While renewal is not
confirmed, CMD's process group gets SIGTERM once the time left before the
deadline is no more than --grace, and every process CMD started gets
SIGKILL shortly before the deadline itself (TTL/5, at most 200ms), even if
dlock is stopped or dead by then; if the guardian is stopped, dlock kills
it and CMD's processes itself. A --grace longer than the TTL allows is
cut down, to half of what is left of the TTL after one renewal interval
and the drift allowance (about TTL/3 with the defaults), so that a slow
renewal does not stop CMD. If the backend says the key is held by someone
else, CMD gets SIGTERM at once and SIGKILL --grace later, or at the
deadline if that comes first. In either case dlock exits with status 76.
The deadline counts time the machine spent suspended (Linux).

CMD runs in a process group of its own. SIGINT, SIGTERM, SIGHUP, SIGQUIT,
SIGUSR1, SIGUSR2 and SIGCONT sent to dlock are forwarded to that group, and
CMD's exit status becomes dlock's. A signal that was ignored when dlock
started (nohup) stays ignored, by dlock and CMD, and is not forwarded. Processes CMD leaves behind are
terminated (SIGTERM, SIGKILL after --grace, never after the deadline)
before K is released.

Containment: on Linux, where dlock may create a cgroup v2 beside its own
(root, or a delegated subtree; Linux 5.14), CMD runs in a cgroup of its
own and SIGKILL reaches all of it at once (cgroup.kill); otherwise (or
with DLOCK_NO_CGROUP=1) the guardian, a child subreaper, finds CMD's
processes by scanning /proc, and sends SIGKILL at least twice a scan's
time before the deadline. --verbose logs which one a run uses. Either way
every process CMD starts stays within reach, including daemons that
double-fork or call setsid. If dlock dies, however (kill -9, the OOM
killer), the guardian kills every such process at once, before the lease
expires. Descriptors dlock inherits (3>file) reach CMD. What escapes:
work handed to another service (systemd-run, at, a container runtime,
ssh); without a cgroup, processes that change user so that dlock may not
signal them; and, if the guardian and dlock are both killed with SIGKILL,
what CMD started (CMD itself dies with its guardian; with a cgroup, the
next dlock run or elect in the same cgroup kills what is left in it; if the
guardian alone is killed, dlock, a subreaper too, kills what CMD started
before it releases K). On other systems only CMD's process group is
contained, and only while the guardian lives.

Job control: SIGTSTP, SIGTTIN and SIGTTOU (Ctrl-Z) do not stop dlock: it
keeps running and renewing while CMD runs, since a stopped dlock cannot
renew. SIGPIPE is ignored: a closed stderr never keeps dlock from clearing
CMD's tree and releasing K. Because CMD is not in the terminal's
foreground process group, programs that read from the terminal are
stopped by SIGTTIN; dlock is meant for jobs and services.
`

const runTail = `
Examples:
  # cron: every 5 minutes on every machine; one runs, the others skip
  # quietly (no mail from cron) with status 0
  */5 * * * * DLOCK_URL=redis://lock.internal:6379 dlock run -q --busy-exit 0 --key reports -- /usr/local/bin/build-reports

  # wait up to a minute for the previous run to finish
  dlock run --url redis://127.0.0.1:6379 --key migrate --wait 1m -- ./migrate.sh

  # the command sees its fence
  dlock run --url redis://127.0.0.1:6379 --key k -- sh -c 'echo "fence $DLOCK_FENCE"'

` + exitCodesHelp

// waitFlag is --wait: 0, a duration, or forever.
type waitFlag struct {
	d       time.Duration
	forever bool
}

func (w *waitFlag) String() string {
	if w.forever {
		return "forever"
	}
	return w.d.String()
}

func (w *waitFlag) Set(s string) error {
	if strings.EqualFold(s, "forever") {
		*w = waitFlag{forever: true}
		return nil
	}
	if s == "0" {
		*w = waitFlag{}
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return errors.New(`want 0, a duration such as 30s, or "forever"`)
	}
	*w = waitFlag{d: d}
	return nil
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	c := newCommand("run", runUsage, runTail, stdout, stderr)
	var b backendFlags
	b.register(c.fs, true, true)
	var wait waitFlag
	c.fs.Var(&wait, "wait", "how long to wait for a busy lock: 0, a `duration`, or forever")
	var quiet bool
	c.fs.BoolVar(&quiet, "quiet", false, "print nothing when the key is busy (for cron); errors are still printed")
	c.fs.BoolVar(&quiet, "q", false, "short for --quiet")
	busyExit := c.fs.Int("busy-exit", exitBusy, "exit `status` when the key is busy, as flock -E (0 to 255)")
	grace := c.fs.Duration("grace", 10*time.Second, "SIGTERM this long before the lease's deadline when renewal fails (cut to fit the TTL),\nand from SIGTERM to SIGKILL when dlock stops the command")
	limit := limitFlag(c.fs, "runs")
	c.check = func() int {
		if *busyExit < 0 || *busyExit > 255 {
			return c.usageError("--busy-exit %d: want 0 to 255", *busyExit)
		}
		return checkLimit(c, *limit)
	}
	s, code := startSession(c, &b, grace, args)
	if s == nil {
		return code
	}
	defer s.close()
	keyAttr := slog.String("key", b.key)
	busy := busyLog{s: s, key: b.key, limit: *limit, quiet: quiet, keyAttr: keyAttr}
	lease, err := acquireN(s.ctx, s.l, b.key, *limit, wait, func() {
		limit := "until it is free"
		if !wait.forever {
			limit = "up to " + wait.d.String()
		}
		busy.log("; waiting "+limit, slog.String("wait", wait.String()))
	})
	if err != nil {
		return notAcquired(s, busy, err, wait, *busyExit)
	}
	return runLeased(s, lease, stdout, keyAttr)
}

// busyLog logs that a key is busy, and who holds it, unless quiet.
type busyLog struct {
	s       *session
	key     string
	limit   int
	quiet   bool
	keyAttr slog.Attr
}

func (b busyLog) log(msg string, extra ...slog.Attr) {
	if b.quiet {
		return
	}
	who, attrs := describeBusy(b.s.ctx, b.s.l, b.key, b.limit)
	b.s.lg.log(slog.LevelInfo, fmt.Sprintf("%q is busy: %s%s", b.key, who, msg), append(append([]slog.Attr{b.keyAttr}, attrs...), extra...)...)
}

// notAcquired logs why dlock run got no lease (err), and returns its exit
// status: the signal's, busyExit for a busy key, or err's.
func notAcquired(s *session, busy busyLog, err error, wait waitFlag, busyExit int) int {
	if sig := s.router.interrupted(); sig != nil {
		s.lg.log(slog.LevelInfo, fmt.Sprintf("%v while waiting for %q", sig, busy.key), busy.keyAttr, slog.String("signal", signalName(sig.sig)))
		return sig.exitCode()
	}
	code := errorCode(err)
	switch {
	case code == exitBusy && wait.forever:
		code = exitUnavailable // only a failing backend ends an endless wait
	case code == exitBusy:
		msg := ""
		if wait.d > 0 {
			msg = fmt.Sprintf("; gave up after waiting %v", wait.d)
		}
		busy.log(msg, slog.Duration("waited", wait.d))
		return busyExit
	}
	s.lg.log(slog.LevelError, err.Error(), busy.keyAttr, slog.Int("status", code))
	return code
}

// runLeased runs the command while lease is held, releases the lease, and
// returns dlock run's exit status: the command's, or exitLeaseLost if the
// lease was not held to the end.
func runLeased(s *session, lease *dlock.Lease, stdout io.Writer, keyAttr slog.Attr) int {
	lg, argv := s.lg, s.argv
	cmdAttr := slog.String("command", strings.Join(argv, " "))
	ch, err := s.startJob(lease, stdout)
	if err != nil {
		releaseLease(lease, false, lg)
		if sig := s.router.interrupted(); sig != nil {
			return sig.exitCode()
		}
		lg.log(slog.LevelError, fmt.Sprintf("cannot start %s: %v", commandString(argv), err), keyAttr, cmdAttr, errAttr(err))
		return startCode(err)
	}
	leaseAttrs := []slog.Attr{keyAttr, slog.String("owner", lease.Owner()), slog.Uint64("fence", lease.Fence()), cmdAttr}
	stopped, lost := s.superviseJob(ch, lease, lease.Context(), leaseAttrs) // lost before our release ends the lease
	status := ch.exitCode()
	rerr := releaseLease(lease, ch.deadlineHit, lg)
	switch {
	case stopped:
		lg.log(slog.LevelError, fmt.Sprintf("%s was terminated because the lease was lost or about to be (its status: %d)", commandString(argv), status),
			append(leaseAttrs, slog.Int("command_status", status), slog.Int("status", exitLeaseLost))...)
		return exitLeaseLost
	case lost != nil || ch.deadlineHit || errors.Is(rerr, dlock.ErrLeaseLost):
		lg.log(slog.LevelError, fmt.Sprintf("%s exited with status %d, but the lease was not held to the end", commandString(argv), status),
			append(leaseAttrs, slog.Int("command_status", status), slog.Int("status", exitLeaseLost))...)
		return exitLeaseLost
	}
	return status
}

// lossCause is why a lease was lost, without the "dlock: lease lost: KEY:"
// that the message around it already says.
func lossCause(err error) string {
	if err == nil {
		return "released"
	}
	msg := cliText(err.Error())
	if i := strings.Index(msg, `": `); i >= 0 && strings.HasPrefix(msg, "lease lost: ") {
		return msg[i+3:]
	}
	return strings.TrimPrefix(msg, "lease lost: ")
}

// acquire takes key as --wait says. If it has to wait for the key, it
// calls waiting first.
func acquire(ctx context.Context, l *dlock.Locker, key string, opts *dlock.LeaseOptions, wait waitFlag, waiting func()) (*dlock.Lease, error) {
	lease, err := l.TryAcquire(ctx, key, opts)
	if err == nil || wait.d == 0 && !wait.forever || ctx.Err() != nil {
		return lease, err
	}
	if !wait.forever {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait.d)
		defer cancel()
	}
	if busy(err) {
		waiting()
	}
	return l.Acquire(ctx, key, opts)
}

// releaseLease releases le, reporting failures other than a loss, and
// returns the release's error. A lost lease gets a short attempt only: the
// backend was unreachable, most likely, and the key expires on its own.
func releaseLease(le *dlock.Lease, failing bool, lg *cliLog) error {
	timeout := releaseTimeout
	if failing || le.Err() != nil {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := le.Release(ctx)
	if err != nil && !errors.Is(err, dlock.ErrLeaseLost) {
		lg.log(slog.LevelWarn, err.Error(), slog.String("key", le.Key()), errAttr(err))
	}
	return err
}
