//go:build unix

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/dlock-go/dlock"
)

// session is what run and elect share once their command line is checked:
// the command to run, the logger, a context that signals cancel, the
// router that forwards signals to the command, and the open Locker.
type session struct {
	argv   []string
	rawURL string
	lg     *cliLog
	logf   func(string, ...any) // lg's infof
	ctx    context.Context
	cancel context.CancelCauseFunc
	router *signalRouter
	l      *dlock.Locker
	kill   killTiming
	// renewed signals each confirmed renewal of the session's lease.
	renewed chan struct{}
}

// startSession parses args into c's flags (b and grace among them), checks
// them and opens the backend. A nil session means dlock exits with code.
// The caller must close the session.
func startSession(c *command, b *backendFlags, grace *time.Duration, args []string) (*session, int) {
	c.json = func() bool { return b.logFormat == "json" }
	if ok, code := c.parse(args); !ok {
		return nil, code
	}
	s := &session{argv: c.fs.Args()}
	var code int
	if s.rawURL, code = b.check(c); code != 0 {
		return nil, code
	}
	if len(s.argv) == 0 {
		return nil, c.usageError("missing command: dlock %s --key K -- CMD [ARG...]", c.name)
	}
	if *grace < 0 {
		return nil, c.usageError("--grace %v: must not be negative", *grace)
	}
	if c.check != nil {
		if code := c.check(); code != 0 {
			return nil, code
		}
	}
	s.lg = b.logger(c.name, c.stderr)
	s.logf = s.lg.infof
	s.renewed = make(chan struct{}, 1)
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	s.router = newSignalRouter(s.cancel, s.logf)
	if s.l, code = openInterruptible(s.ctx, s.lg, s.rawURL, b.lockerOptions(s.lg, s.renewed), s.router); code != 0 {
		s.close()
		return nil, code
	}
	// The settings in effect: the flags over the URL over the defaults.
	o := b.settings(s.rawURL)
	var cut bool
	s.kill, cut = schedule(o.ttl, o.renew, o.drift, *grace)
	if cut && flagSet(c.fs, "grace") {
		s.lg.log(slog.LevelWarn, fmt.Sprintf("--grace %v is more than a TTL of %v allows: if renewal fails, SIGTERM goes out %v before the lease's deadline, SIGKILL %v before it",
			*grace, o.ttl, s.kill.deadlineGrace, s.kill.killLead),
			slog.Duration("grace", *grace), slog.Duration("ttl", o.ttl), slog.Duration("deadline_grace", s.kill.deadlineGrace))
	}
	return s, 0
}

// openInterruptible is open, except that a signal ends it at once with
// 128+N: a backend that accepts connections and never answers would
// otherwise hold dlock for the open's own timeouts. The abandoned open
// finishes in the background, and its Locker, if any, is closed. opts
// override the URL's settings, as in dlock.Open.
func openInterruptible(ctx context.Context, lg *cliLog, rawURL string, opts *dlock.Options, router *signalRouter) (*dlock.Locker, int) {
	type result struct {
		l   *dlock.Locker
		err error
	}
	ch := make(chan result, 1)
	go func() {
		l, err := dlock.Open(ctx, rawURL, opts)
		ch <- result{l, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			if sig := router.interrupted(); sig != nil {
				return nil, sig.exitCode()
			}
			lg.log(slog.LevelError, r.err.Error(), slog.String("url", redact(rawURL)))
			return nil, errorCode(r.err)
		}
		return r.l, 0
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.l != nil {
				r.l.Close()
			}
		}()
		if sig := router.interrupted(); sig != nil {
			return nil, sig.exitCode()
		}
		lg.log(slog.LevelError, context.Cause(ctx).Error())
		return nil, exitUnavailable
	}
}

// close closes the Locker (releasing what is still held), stops signal
// routing, cancels the context and writes the log's last lines, in that
// order.
func (s *session) close() {
	if s.l != nil {
		s.l.Close()
	}
	s.router.stop()
	s.cancel(nil)
	s.lg.close()
}

// startJob starts the command under lease, with the lease's variables in
// its environment, unless a signal stopped dlock first.
func (s *session) startJob(lease *dlock.Lease, stdout io.Writer) (*child, error) {
	return s.router.start(func() (*child, error) {
		return startChild(s.argv, leaseEnv(lease), stdout, s.lg.q.shared(), lease.ValidUntil(), s.kill, s.lg)
	})
}

// superviseJob waits until the job ch and everything it started are gone,
// stopping them when stop ends (its cause says why), then stops forwarding
// signals to them. If the guardian stopped the job at the lease's
// deadline, it waits for the loss and logs it. It reports whether the job
// was stopped, and the lease's error once the job is gone. attrs describe
// the lease in log records.
func (s *session) superviseJob(ch *child, lease *dlock.Lease, stop context.Context, attrs []slog.Attr) (stopped bool, lost error) {
	stopped = ch.supervise(stop.Done(), s.renewed, lease.ValidUntil, func() {
		cause := context.Cause(stop)
		s.lg.log(slog.LevelWarn, fmt.Sprintf("lease on %q lost: %s; stopping %s (SIGTERM, then SIGKILL within %v)",
			lease.Key(), lossCause(cause), commandString(s.argv), s.kill.grace), append(attrs, errAttr(cause))...)
	})
	s.router.detach()
	if ch.deadlineHit {
		if err := awaitLoss(stop.Done(), lease.ValidUntil, lease.Err); err != nil {
			s.lg.log(slog.LevelWarn, fmt.Sprintf("lease on %q lost: %s", lease.Key(), lossCause(err)), append(attrs, errAttr(err))...)
		}
	}
	return stopped, lease.Err()
}
