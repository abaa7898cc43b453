package redlock

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// TestWorkersConcurrent: calls never wait for one another: with every
// worker busy, another call gets a worker of its own.
func TestWorkersConcurrent(t *testing.T) {
	w := newWorkers(2)
	defer w.close()
	const n = 5
	var arrived atomic.Int32
	all := make(chan struct{})     // closed once all n calls run at once
	release := make(chan struct{}) // lets them return
	for range n {
		w.do(func() {
			if arrived.Add(1) == n {
				close(all)
			}
			<-release
		})
	}
	select {
	case <-all:
	case <-time.After(10 * time.Second):
		t.Errorf("%d of %d calls running at once: the workers serialize calls", arrived.Load(), n)
	}
	close(release)
}

// TestWorkersExit: an idle worker exits on its own after workerIdle, so a
// driver nobody closes keeps no goroutine (the bubble ends only when every
// goroutine in it has); after close, do runs the call itself.
func TestWorkersExit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorkers(2)
		for range 3 {
			ran := make(chan struct{})
			w.do(func() { close(ran) })
			<-ran
			synctest.Wait() // the worker is idle again and is reused
		}
		time.Sleep(workerIdle + time.Second)
		synctest.Wait()
	})
	w := newWorkers(2)
	w.do(func() {})
	w.close()
	ran := false
	w.do(func() { ran = true })
	if !ran {
		t.Error("do after close did not run the call before returning")
	}
}

// slowNode delays Acquire only.
type slowNode struct{ driver.Locker }

func (s slowNode) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	time.Sleep(time.Second)
	return s.Locker.Acquire(ctx, req)
}

// TestLateGrantsForgotten: the record of a token's calls in flight, which
// orders its release after its acquire on each node, is dropped once they
// have returned, so that it cannot pile up.
func TestLateGrantsForgotten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nodes := []driver.Locker{memdriver.NewStore().Driver(), memdriver.NewStore().Driver(), slowNode{memdriver.NewStore().Driver()}}
		d, err := NewDriver(nodes, &Options{DisableFencing: true})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		l := d.(*locker)
		queued := func(token string) bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			_, ok := l.queues[token]
			return ok
		}
		for i := range 3 {
			req := driver.Request{Key: "k", Token: fmt.Sprint("t", i), TTL: time.Minute}
			if res, err := d.Acquire(t.Context(), req); err != nil || !res.Acquired {
				t.Fatalf("Acquire = %+v, %v", res, err)
			}
			if !queued(req.Token) {
				t.Fatal("no record of the slow node's acquire, still in flight")
			}
			time.Sleep(2 * time.Second)
			synctest.Wait()
			if queued(req.Token) {
				t.Error("record kept after every node answered")
			}
			d.Release(t.Context(), req.Key, req.Token)
			// Release returns once a majority released; the last
			// node's release finishes on a worker.
			synctest.Wait()
			if queued(req.Token) {
				t.Error("record kept after every node released")
			}
		}
	})
}

// TestWorkersIdleCap: after a burst of calls, at most maxIdle workers stay.
func TestWorkersIdleCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorkers(2)
		defer w.close()
		release := make(chan struct{})
		for range 5 {
			w.do(func() { <-release })
		}
		close(release)
		synctest.Wait()
		if n := w.idle.Load(); n != 2 {
			t.Errorf("%d idle workers after a burst of 5 calls; want maxIdle, 2", n)
		}
	})
}

// gaveUpRelease is a node whose releases give up: their outcome is
// unknown.
type gaveUpRelease struct{ driver.Locker }

func (gaveUpRelease) Release(ctx context.Context, _, _ string) error {
	return fmt.Errorf("release: %w", context.DeadlineExceeded)
}

// TestUnsureReleasesForgotten: the record of a token's releases of
// unknown outcome, which keeps later acquires with it off those nodes, is
// dropped once it has lasted its time (the lock's TTL, at least a
// minute), so that it cannot pile up while a node fails every release.
func TestUnsureReleasesForgotten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nodes := []driver.Locker{memdriver.NewStore().Driver(), memdriver.NewStore().Driver(), gaveUpRelease{memdriver.NewStore().Driver()}}
		d, err := NewDriver(nodes, &Options{DisableFencing: true, Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 10 * time.Second}}})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		l := d.(*locker)
		release := func(round int) {
			for i := range 100 {
				d.Release(t.Context(), "k", fmt.Sprint(round, "-", i))
			}
			synctest.Wait()
		}
		release(0)
		if !l.unsureOn("0-0", 2) || l.unsureOn("0-0", 0) {
			t.Fatal("a release that gave up on node 2 is not recorded there, or is recorded on node 0 that answered")
		}
		time.Sleep(minUnsureHold + time.Second)
		release(1)
		l.mu.Lock()
		defer l.mu.Unlock()
		for i := range 100 {
			if _, ok := l.unsure.m[fmt.Sprint(0, "-", i)]; ok {
				t.Fatalf("record of token 0-%d kept %v after its release gave up; want it dropped after %v", i, minUnsureHold+time.Second, minUnsureHold)
			}
		}
	})
}
