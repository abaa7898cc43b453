package redisdriver_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// TestLeftCallBoundedWithoutClientTimeouts: a client without read and
// write timeouts (-1), bounded by its callers' contexts alone
// (ContextTimeoutEnabled), as the driver's doc advises. An acquire whose
// caller's deadline ends while the server is frozen (SIGSTOP) runs on
// after its caller left, so that the undo that follows waits for its
// reply; but no reply comes, and nothing else bounds it: it must still
// end, or it holds its lane and Close for as long as the server stays
// frozen (a dead host: until TCP gives up, minutes later).
func TestLeftCallBoundedWithoutClientTimeouts(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	admin := s.Client(t)
	pid := serverPID(t, admin)
	o := s.Options()
	o.ReadTimeout, o.WriteTimeout = -1, -1
	o.ContextTimeoutEnabled = true
	o.MaxRetries = -1
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	d := redisdriver.NewDriver(c, nil)
	t.Cleanup(func() { d.Close() })
	ctx := testCtx(t)
	if _, err := d.Acquire(ctx, req("unbounded/warm", "w")); err != nil {
		t.Fatal(err)
	}

	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) }) // before the server stops
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := d.Acquire(cctx, req("unbounded/k", "t")); !driver.OutcomeUnknown(err) {
		t.Fatalf("acquire on a frozen server: %v, want an unknown outcome", err)
	}
	start := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	select {
	case err := <-closed:
		t.Logf("Close returned after %v: %v", time.Since(start), err)
	case <-time.After(15 * time.Second):
		syscall.Kill(pid, syscall.SIGCONT)
		<-closed
		t.Fatalf("Close waited %v for a call whose caller left, on a server that never answers", time.Since(start))
	}
}
