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

const electUsage = `Usage: dlock elect --key K [--url URL] [--ttl 15s] [--grace 10s] [--owner NAME]
                   [--limit N] -- CMD [ARG...]

Hot standby: run the same dlock elect on every machine; exactly one of them
runs CMD at a time (with --limit N, up to N of them, on a semaphore K; the
others stand by, and one takes over when a runner goes).

Each dlock elect campaigns for the lock K. The winner starts CMD (with
DLOCK_KEY, DLOCK_FENCE and DLOCK_TOKEN in its environment) and renews the
lease while CMD runs; the others wait. When the leader's machine or dlock
process dies, its lease expires and a standby starts CMD within the TTL plus
a moment. If the leader's renewal fails, its CMD is stopped by the lease's
deadline, as with dlock run: SIGTERM once the time left is no more than
--grace (cut to fit the TTL), SIGKILL to every process CMD started just
before the deadline. Then it campaigns again.

If CMD exits on its own while leading, dlock elect clears what CMD left,
releases K, so that a standby takes over at once, and exits with CMD's
status (76 if the lease was lost before CMD's leftovers were cleared): it
never restarts CMD. Run dlock elect under a supervisor (systemd, a
container runtime) that restarts it.

Leadership changes are logged on stderr with timestamps. Signals reach CMD
as with dlock run, and CMD is contained the same way: on Linux, nothing CMD
starts outlives dlock elect, even killed with SIGKILL. SIGINT, SIGTERM or
SIGHUP always end dlock elect: while CMD runs they are forwarded and dlock
elect exits with CMD's status once CMD exits; in any other phase (standby,
or stopping CMD after a loss) it exits with 128+N once CMD is gone.
`

const electTail = `
Examples:
  # on every machine, e.g. as a systemd service with Restart=always
  dlock elect --url redis://lock.internal:6379 --key billing-worker -- ./billing-worker

  # a short TTL: faster takeover, more renewal traffic
  DLOCK_URL=redis://127.0.0.1:6379 dlock elect --key k --ttl 5s -- sleep 1000

` + exitCodesHelp

// childExitError is the lead function's result when the command exited on
// its own: the election is over.
type childExitError struct{ status int }

func (e *childExitError) Error() string {
	return fmt.Sprintf("command exited with status %d", e.status)
}

// startError reports that the command could not be started.
type startError struct{ err error }

func (e *startError) Error() string { return "cannot start the command: " + e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

func cmdElect(args []string, stdout, stderr io.Writer) int {
	c := newCommand("elect", electUsage, electTail, stdout, stderr)
	var b backendFlags
	b.register(c.fs, true, true)
	grace := c.fs.Duration("grace", 10*time.Second, "SIGTERM this long before the lease's deadline when renewal fails (cut to fit the TTL),\nand from SIGTERM to SIGKILL when dlock stops the command")
	limit := limitFlag(c.fs, "leaders")
	c.check = func() int { return checkLimit(c, *limit) } // before the backend is opened
	s, code := startSession(c, &b, grace, args)
	if s == nil {
		return code
	}
	defer s.close()
	el := &elector{s: s, stdout: stdout, cmd: commandString(s.argv),
		keyAttr: slog.String("key", b.key), cmdAttr: slog.String("command", strings.Join(s.argv, " "))}
	e := dlock.NewElection(s.l, b.key, el.options(*limit))
	eff := b.settings(s.rawURL) // the settings in effect, for messages
	s.lg.log(slog.LevelInfo, fmt.Sprintf("campaigning for %q on %s as %s (TTL %v)", b.key, redact(s.rawURL), safeText(eff.owner), eff.ttl),
		el.keyAttr, slog.String("owner", eff.owner), slog.String("url", redact(s.rawURL)), slog.Duration("ttl", eff.ttl))
	// The election campaigns again after every loss. A command that
	// exited on its own, or a stop signal that came while the command was
	// being stopped, ends it instead: el.final says why, and cancelling
	// runCtx makes Run return.
	runCtx, endRun := context.WithCancel(s.ctx)
	defer endRun()
	el.resign, el.endRun = e.Resign, endRun
	err := e.Run(runCtx, el.lead)
	if el.final != nil {
		err = el.final
	}
	return el.exitCode(err, *limit)
}

// elector is one dlock elect: it leads by running the command, and logs
// the election's changes.
type elector struct {
	s       *session
	stdout  io.Writer
	cmd     string    // the command, for messages
	keyAttr slog.Attr // the key, for log records
	cmdAttr slog.Attr // the command, for log records
	resign  func()    // steps down from the election
	endRun  func()    // ends the election: Run returns
	// final is why the election ended (see lead), or nil while it
	// campaigns again after every loss.
	final error
}

// leaseAttrs are the log attributes of le.
func (el *elector) leaseAttrs(le *dlock.Lease) []slog.Attr {
	return []slog.Attr{el.keyAttr, slog.String("owner", le.Owner()), slog.Uint64("fence", le.Fence())}
}

// options are the election's options, whose callbacks log its changes.
func (el *elector) options(limit int) *dlock.ElectionOptions {
	lg := el.s.lg
	return &dlock.ElectionOptions{
		Lease: &dlock.LeaseOptions{Limit: limit},
		OnLeader: func(h dlock.Holder) {
			lg.log(slog.LevelInfo, "leader is "+holderString(h), append([]slog.Attr{el.keyAttr}, holderAttrs(h)...)...)
		},
		OnElected: func(le *dlock.Lease) {
			lg.log(slog.LevelInfo, fmt.Sprintf("elected: %s leads %q with fence %d; starting %s", safeText(le.Owner()), le.Key(), le.Fence(), el.cmd),
				append(el.leaseAttrs(le), el.cmdAttr)...)
		},
		OnDemoted: func(le *dlock.Lease, cause error) {
			var exit *childExitError
			switch {
			case errors.As(cause, &exit), errors.As(cause, new(*startError)):
				lg.log(slog.LevelInfo, fmt.Sprintf("stepped down (fence %d): %v; %q released", le.Fence(), cause, le.Key()), el.leaseAttrs(le)...)
			case errors.Is(cause, dlock.ErrLeaseLost):
				lg.log(slog.LevelWarn, fmt.Sprintf("demoted (fence %d) after the lease was lost; campaigning again", le.Fence()),
					append(el.leaseAttrs(le), errAttr(cause))...)
			default:
				lg.log(slog.LevelInfo, fmt.Sprintf("stepped down (fence %d): %s", le.Fence(), lossCause(cause)), el.leaseAttrs(le)...)
			}
		},
	}
}

// lead runs the command while lease is held (lctx ends when it is not).
// The command's exit on its own, a start failure, or a stop signal that
// came while the command was being stopped ends the election (el.final);
// otherwise the election campaigns again.
func (el *elector) lead(lctx context.Context, lease *dlock.Lease) error {
	s, lg, cmd, cmdAttr := el.s, el.s.lg, el.cmd, el.cmdAttr
	ch, err := s.startJob(lease, el.stdout)
	if err != nil {
		var sig *signalError
		if !errors.As(err, &sig) {
			err = &startError{err}
		}
		return el.end(err)
	}
	lg.log(slog.LevelInfo, fmt.Sprintf("%s started (pid %d)", cmd, ch.pid), append(el.leaseAttrs(lease), cmdAttr, slog.Int("pid", ch.pid))...)
	stopped, lost := s.superviseJob(ch, lease, lctx, append(el.leaseAttrs(lease), cmdAttr))
	if ch.deadlineHit && lost == nil && lctx.Err() == nil {
		// A late renewal was confirmed: step down all the same, the
		// command is gone.
		el.resign()
	}
	if !stopped {
		if lost != nil || ch.deadlineHit {
			lg.log(slog.LevelError, fmt.Sprintf("%s exited with status %d, but the lease was lost before its processes were cleared", cmd, ch.exitCode()),
				append(el.leaseAttrs(lease), cmdAttr, slog.Int("command_status", ch.exitCode()), slog.Int("status", exitLeaseLost))...)
			return el.end(&childExitError{exitLeaseLost})
		}
		return el.end(&childExitError{ch.exitCode()})
	}
	lg.log(slog.LevelWarn, fmt.Sprintf("%s ended with status %d", cmd, ch.exitCode()), append(el.leaseAttrs(lease), cmdAttr, slog.Int("command_status", ch.exitCode()))...)
	if sig := s.router.stopRequested(); sig != nil {
		return el.end(sig)
	}
	return context.Cause(lctx)
}

// end ends the election with err.
func (el *elector) end(err error) error {
	el.final = err
	el.endRun()
	return err
}

// exitCode logs why the election ended with err, and returns dlock
// elect's exit status.
func (el *elector) exitCode(err error, limit int) int {
	lg, logf := el.s.lg, el.s.logf
	var exit *childExitError
	var serr *startError
	var sig *signalError
	switch {
	case errors.As(err, &exit):
		return exit.status
	case errors.As(err, &serr):
		lg.log(slog.LevelError, serr.Error(), el.keyAttr, el.cmdAttr, errAttr(serr.err))
		return startCode(serr.err)
	case errors.As(err, &sig):
		logf("%v; stopped campaigning", sig)
		return sig.exitCode()
	}
	if sig := el.s.router.interrupted(); sig != nil {
		logf("%v; stopped campaigning", sig)
		return sig.exitCode()
	}
	err = limitError(err, limit)
	lg.log(slog.LevelError, err.Error(), el.keyAttr, slog.Int("status", errorCode(err)))
	return errorCode(err)
}
