package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/dlock-go/dlock"
)

const demoUsage = `Usage: dlock demo [--url URL] [--workers N] [--ttl 1s]

Watch leader election survive a crash, in a few seconds and with no setup.

N workers, each with its own client of the backend, campaign for one key
with a short TTL; one is elected and runs the job, renewing its lease. Then
the runner crashes: it stops renewing and never releases, as a killed
process would, so the key is freed only when its TTL runs out on the
backend. Another worker takes over with a larger fence. The timeline shows
elapsed milliseconds, who leads, the fences, and how long the takeover took
after the crash.

The backend is --url, else $DLOCK_URL, else an in-memory store in this
process. With a real backend the demo uses a fresh random key.
`

const demoTail = `
Examples:
  dlock demo
  dlock demo --url redis://127.0.0.1:6379 --workers 5
`

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	c := newCommand("demo", demoUsage, demoTail, stdout, stderr)
	urlFlag := c.fs.String("url", "", "backend `URL` (default $DLOCK_URL, else mem://, in this process)")
	workers := c.fs.Int("workers", 3, "number of workers, 2 to 20")
	ttl := new(time.Second)
	c.fs.Var((*durationFlag)(ttl), "ttl", "lease TTL, a `duration` from 50ms to 30s: the takeover takes about this long")
	if ok, code := c.parse(args); !ok {
		return code
	}
	switch {
	case c.fs.NArg() > 0:
		return c.usageError("unexpected argument %q", c.fs.Arg(0))
	case *workers < 2 || *workers > 20:
		return c.usageError("--workers %d: want 2 to 20", *workers)
	case *ttl < 50*time.Millisecond || *ttl > 30*time.Second:
		return c.usageError("--ttl %v: want 50ms to 30s", *ttl)
	}
	id := strings.ToLower(rand.Text()[:8])
	rawURL := *urlFlag
	if rawURL == "" {
		rawURL = os.Getenv("DLOCK_URL")
	}
	if rawURL == "" {
		rawURL = "mem://"
	}
	// Workers must share one store: a bare mem:// would give each its own.
	if u, err := url.Parse(rawURL); err == nil && u.Scheme == "mem" && u.Host == "" {
		u.Host = "dlock-demo-" + id
		rawURL = u.String()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	d := &demo{
		key:      "dlock-demo-" + id,
		ttl:      *ttl,
		tl:       &timeline{w: stdout},
		takeover: make(chan struct{}),
	}
	lockers := make([]*dlock.Locker, *workers)
	defer func() {
		for _, l := range lockers {
			if l != nil {
				l.Close()
			}
		}
	}()
	for i := range lockers {
		l, code := open(ctx, c, rawURL, nil)
		if code != 0 {
			return code
		}
		lockers[i] = l
	}
	// Fail fast on an unreachable backend, rather than wait for a leader.
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := lockers[0].Holders(pctx, d.key)
	cancel()
	if err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return c.errorf(errorCode(err), "%v", err)
	}

	fmt.Fprintf(stdout, "dlock demo: %d workers elect one runner for %q on %s, TTL %v.\n",
		*workers, d.key, redact(rawURL), d.ttl)
	fmt.Fprintf(stdout, "The runner will crash: it stops renewing and never releases its lease.\n\n")
	return d.run(ctx, lockers, c)
}

type demo struct {
	key string
	ttl time.Duration
	tl  *timeline

	mu            sync.Mutex
	running       int  // lead functions running, crashed ones excluded
	overlap       bool // two ran at once: must never happen
	crashed       bool
	crashAt       time.Time
	crashed1      string // who crashed
	crashFence    uint64
	takeover      chan struct{} // closed when a worker is elected after the crash
	takeoverAt    time.Time
	takeoverWho   string
	takeoverFence uint64
}

func (d *demo) run(ctx context.Context, lockers []*dlock.Locker, c *command) int {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.tl.start = time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(lockers))
	for i, l := range lockers {
		name := fmt.Sprintf("worker-%d", i+1)
		e := dlock.NewElection(l, d.key, &dlock.ElectionOptions{
			// Renewal by hand, so that a worker can stop renewing
			// without releasing: that is what a crash looks like to
			// the backend.
			Lease: &dlock.LeaseOptions{TTL: d.ttl, RenewInterval: -1, Owner: name},
			OnLeader: func(h dlock.Holder) {
				d.tl.event("%s sees leader %s", name, holderString(h))
			},
		})
		wg.Go(func() {
			if err := e.Run(wctx, d.lead(wctx, name)); err != nil && wctx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	limit := time.NewTimer(3*d.ttl + 5*time.Second)
	defer limit.Stop()
	var fail error
	select {
	case <-d.takeover:
		// Let the new leader renew a couple of times.
		select {
		case <-time.After(d.ttl * 3 / 4):
		case <-ctx.Done():
		}
	case <-limit.C:
		fail = fmt.Errorf("no takeover within %v: is the backend reachable?", 3*d.ttl+5*time.Second)
	case err := <-errs:
		fail = err
	case <-ctx.Done():
	}
	d.tl.event("demo over")
	d.tl.close()
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		fmt.Fprintln(c.stderr, "dlock demo: interrupted")
		return 128 + 2
	}
	if fail != nil {
		return c.errorf(errorCode(fail), "%v", fail)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := c.stdout
	fmt.Fprintf(out, "\n%s crashed at %dms, holding fence %d.\n",
		d.crashed1, ms(d.crashAt.Sub(d.tl.start)), d.crashFence)
	fmt.Fprintf(out, "%s took over at %dms with fence %d: %dms after the crash (TTL %v).\n",
		d.takeoverWho, ms(d.takeoverAt.Sub(d.tl.start)), d.takeoverFence, ms(d.takeoverAt.Sub(d.crashAt)), d.ttl)
	if d.overlap || d.takeoverFence <= d.crashFence {
		fmt.Fprintln(out, "FAILED: two runners at once, or a fence that did not grow.")
		return 1
	}
	fmt.Fprintln(out, "Never two runners at once. The fence grew, so a resource that checks fences")
	fmt.Fprintln(out, "rejects late writes from the crashed runner, had it only been paused.")
	return 0
}

// lead is a worker's job while it leads: renew every TTL/3, and crash, if
// it is the first leader, after three renewals.
func (d *demo) lead(wctx context.Context, name string) func(context.Context, *dlock.Lease) error {
	return func(ctx context.Context, lease *dlock.Lease) error {
		d.mu.Lock()
		d.running++
		d.overlap = d.overlap || d.running > 1
		first := !d.crashed
		takeover := false
		if d.crashed && d.takeoverAt.IsZero() {
			d.takeoverAt, d.takeoverWho, d.takeoverFence = time.Now(), name, lease.Fence()
			takeover = true
		}
		d.mu.Unlock()
		if takeover {
			d.tl.event("%s elected with fence %d: takeover %dms after the crash", name, lease.Fence(), ms(time.Since(d.crashAt)))
			close(d.takeover)
		} else {
			d.tl.event("%s elected with fence %d: runs the job", name, lease.Fence())
		}
		crashed := false
		defer func() {
			if !crashed {
				d.mu.Lock()
				d.running--
				d.mu.Unlock()
			}
		}()

		tick := time.NewTicker(d.ttl / 3)
		defer tick.Stop()
		for renewals := 1; ; renewals++ {
			select {
			case <-ctx.Done():
				d.tl.event("%s lost its lease: %v", name, context.Cause(ctx))
				return context.Cause(ctx)
			case <-tick.C:
			}
			if err := lease.Refresh(ctx, 0); err != nil {
				d.tl.event("%s could not renew: %v", name, err)
				return err
			}
			if !first || renewals < 3 {
				d.tl.event("%s renewed its lease (fence %d)", name, lease.Fence())
				continue
			}
			crashed = true
			d.mu.Lock()
			d.crashed, d.crashAt, d.crashed1, d.crashFence = true, time.Now(), name, lease.Fence()
			d.running--
			d.mu.Unlock()
			d.tl.event("%s renewed its lease (fence %d), then CRASHES: no more renewals, no release", name, lease.Fence())
			// A dead process does nothing more. The backend frees the
			// key one TTL after this last renewal.
			<-wctx.Done()
			return nil
		}
	}
}

// timeline prints events with the milliseconds elapsed since start.
type timeline struct {
	mu     sync.Mutex
	w      io.Writer
	start  time.Time
	closed bool
}

func (t *timeline) event(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	fmt.Fprintf(t.w, "%7dms  %s\n", ms(time.Since(t.start)), fmt.Sprintf(format, args...))
}

func (t *timeline) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
}

func ms(d time.Duration) int64 { return d.Milliseconds() }
