package etcddriver_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Environment of the holder process of TestFaultHolderPaused.
const (
	pausedHolderEnv    = "DLOCK_ETCD_PAUSED_HOLDER"
	pausedEndpointsEnv = "DLOCK_ETCD_PAUSED_ENDPOINTS"
	pausedKey          = "fault/holder-paused"
)

// TestFaultHolderPaused runs a holder in a process of its own, which
// takes a key with TTL faultTTL and spins, looking at the clock; the test
// stops the process (SIGSTOP) for three TTLs. etcd frees the key at the
// lease's expiry and the test takes it; then it resumes the holder. The
// holder's first look must report its lease lost, its local deadline must
// have passed before the test got the key (the holder learns of the loss
// before the key is free, even though it learns it late), and the test's
// fence must exceed the holder's. The waiting test is woken by the
// expiry's watch event, within a second of the holder's deadline (etcd
// checks leases every 500 ms).
func TestFaultHolderPaused(t *testing.T) {
	if os.Getenv(pausedHolderEnv) == "1" {
		pausedHolder()
		return
	}
	c := etcdtest.Start(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFaultHolderPaused$", "-test.count=1")
	cmd.Env = append(os.Environ(), pausedHolderEnv+"=1", pausedEndpointsEnv+"="+strings.Join(c.Endpoints(), ","))
	cmd.Stderr = os.Stderr
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
	next := func() []string {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("holder ended early: %v", lines.Err())
		}
		return strings.Fields(lines.Text())
	}
	ready := next()
	if len(ready) != 2 || ready[0] != "ready" {
		t.Fatalf("holder said %q; want ready FENCE", ready)
	}
	holderFence, _ := strconv.ParseUint(ready[1], 10, 64)
	l := etcddriver.New(c.Client(t), &etcddriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: faultTTL}}})
	defer l.Close()
	if lease, err := l.TryAcquire(ctx, pausedKey, nil); err == nil {
		lease.Release(ctx)
		t.Fatalf("the key was free while the holder ran")
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	lease, err := l.Acquire(ctx, pausedKey, nil)
	if err != nil {
		cmd.Process.Signal(syscall.SIGCONT)
		t.Fatalf("Acquire while the holder is stopped = %v; want the key at its expiry", err)
	}
	got := time.Now()
	defer lease.Release(ctx)
	if d := time.Until(stopped.Add(3 * faultTTL)); d > 0 {
		time.Sleep(d) // the fault: a pause of 3×TTL in all
	}
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	look := next()
	if len(look) < 3 || look[0] != "look" {
		t.Fatalf("holder said %q; want look VALIDUNTIL ERR", look)
	}
	validNs, _ := strconv.ParseInt(look[1], 10, 64)
	validUntil := time.Unix(0, validNs)
	if errText := strings.Join(look[2:], " "); !strings.Contains(errText, "lease lost") {
		t.Errorf("holder's first look after a pause of 3×TTL: %s; want the loss", errText)
	}
	if !validUntil.Before(got) {
		t.Errorf("the holder's local deadline %v is not before the key was granted to another at %v: the holder must lose its lease before the key is free",
			validUntil.Format(time.StampMicro), got.Format(time.StampMicro))
	}
	if wake := got.Sub(validUntil); wake > time.Second+faultTTL/10 {
		t.Errorf("the waiter got the key %v after the holder's local deadline; want it woken by the expiry, within a second", wake)
	}
	if lease.Fence() <= holderFence {
		t.Errorf("fence %d after the paused holder's %d: fences must increase", lease.Fence(), holderFence)
	}
	if rel := next(); len(rel) < 2 || rel[0] != "release" || rel[1] == "<nil>" {
		t.Errorf("holder's Release after the pause: %q; want an error", rel)
	}
	t.Logf("the waiter got the key %v after the holder's local deadline", got.Sub(validUntil).Round(time.Millisecond))
}

// pausedHolder takes pausedKey, says "ready FENCE", and spins until it
// sees a gap longer than the TTL in the clock: it was stopped. It then
// prints its lease's local deadline and Err, from one first look, and
// the result of its Release.
func pausedHolder() {
	runtime.GOMAXPROCS(1) // the renewal goroutine runs only when this one yields
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(os.Getenv(pausedEndpointsEnv), ","),
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		fmt.Println("client:", err)
		return
	}
	defer client.Close()
	l := etcddriver.New(client, &etcddriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: faultTTL}}})
	defer l.Close()
	ctx := context.Background()
	lease, err := l.Acquire(ctx, pausedKey, nil)
	if err != nil {
		fmt.Println("acquire:", err)
		return
	}
	last := time.Now()
	fmt.Println("ready", lease.Fence())
	for {
		now := time.Now()
		if now.Sub(last) > faultTTL {
			break
		}
		last = now
	}
	err = lease.Err()
	fmt.Println("look", lease.ValidUntil().UnixNano(), err)
	fmt.Println("release", lease.Release(ctx))
}
