package dlock_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/memdriver"
)

// pauseChildEnv makes the test binary run as the paused worker of
// TestPausedWorkerSeesLossAtFirstLook.
const pauseChildEnv = "DLOCK_TEST_PAUSED_WORKER"

const pauseTTL = time.Second

// TestPausedWorkerSeesLossAtFirstLook runs a worker process that holds
// leases and spins, looking at the clock; the test stops it (SIGSTOP) for
// 2.5×TTL and resumes it. The worker's first look after the resume, before
// the renewal goroutine can run, must report the loss: through
// Lease.Err, through the lease context's Err, through Done, and through
// the contexts that Do and Election hand out (issue 11 item 3). A Release
// as the first call after the pause must report the loss too, although the
// backend still holds the key (a large Drift keeps the server's expiry far
// behind the local deadline): the lease's deadline passed before it.
func TestPausedWorkerSeesLossAtFirstLook(t *testing.T) {
	if os.Getenv(pauseChildEnv) == "1" {
		pausedWorker()
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestPausedWorkerSeesLossAtFirstLook$", "-test.count=1")
	cmd.Env = append(os.Environ(), pauseChildEnv+"=1")
	cmd.Stderr = os.Stderr
	// A worker that hangs shows its goroutines before it is killed.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(out)
	next := func() string {
		if !lines.Scan() {
			t.Fatalf("worker ended early: %v", lines.Err())
		}
		return lines.Text()
	}
	if l := next(); l != "ready" {
		t.Fatalf("worker said %q; want ready", l)
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(pauseTTL * 5 / 2) // the fault: a pause of 2.5×TTL
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	for _, what := range pauseLooks {
		l := next()
		if !strings.HasPrefix(l, what+" ") {
			t.Fatalf("worker said %q; want a report of %s", l, what)
		}
		if !strings.Contains(l, "lease lost") {
			t.Errorf("first look after a pause of 2.5×TTL: %s; want the loss reported", l)
		}
	}
	if l := next(); l != "done" {
		t.Fatalf("worker said %q; want done", l)
	}
}

// pauseLooks are the ways pausedWorker looks at its leases, in order.
var pauseLooks = []string{"lease.Err", "ctx.Err", "Done", "Do ctx.Err", "Election ctx.Err", "Release"}

// pausedWorker holds three leases, runs Do and an Election whose functions
// hand their contexts over and wait, says ready, and spins until it sees a
// gap longer than the TTL in the clock: it was paused. It then looks at
// each lease or context once, in a different way, and prints what it saw.
func pausedWorker() {
	runtime.GOMAXPROCS(1) // the renewal goroutine runs only when this one yields
	l := memdriver.New(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: pauseTTL}})
	defer l.Close()
	ctx := context.Background()

	works := make(chan context.Context)
	finish := make(chan struct{})
	work := func(ctx context.Context, _ *dlock.Lease) error {
		works <- ctx
		<-finish
		return nil
	}
	ectx, stopElection := context.WithCancel(ctx)
	ended := make(chan error, 2)
	go func() { ended <- l.Do(ctx, "paused/do", nil, work) }()
	doCtx := <-works
	go func() { ended <- dlock.NewElection(l, "paused/elect", nil).Run(ectx, work) }()
	electCtx := <-works
	defer func() {
		stopElection()
		close(finish)
		<-ended
		<-ended
	}()
	var leases [3]*dlock.Lease
	for i := range leases {
		lease, err := l.Acquire(ctx, fmt.Sprint("paused/", i), nil)
		if err != nil {
			fmt.Println("acquire:", err)
			return
		}
		leases[i] = lease
	}
	// Local deadline at most 2s after each renewal, the backend's 10s.
	drifted, err := l.Acquire(ctx, "paused/release", &dlock.LeaseOptions{TTL: 10 * time.Second, Drift: 8 * time.Second, RenewInterval: 200 * time.Millisecond})
	if err != nil {
		fmt.Println("acquire:", err)
		return
	}
	lctx := leases[1].Context()
	last := time.Now() // before ready: the pause may come at once
	fmt.Println("ready")
	for {
		now := time.Now()
		if now.Sub(last) > pauseTTL {
			break
		}
		last = now
	}
	errs := make([]error, len(pauseLooks))
	errs[0] = leases[0].Err()
	if lctx.Err() != nil {
		errs[1] = context.Cause(lctx)
	}
	select {
	case <-leases[2].Context().Done():
		errs[2] = leases[2].Err()
	default:
	}
	if doCtx.Err() != nil {
		errs[3] = context.Cause(doCtx)
	}
	if electCtx.Err() != nil {
		errs[4] = context.Cause(electCtx)
	}
	errs[5] = drifted.Release(ctx)
	for i, what := range pauseLooks {
		fmt.Println(what, errs[i])
	}
	fmt.Println("done")
}
