package etcddriver_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
)

// faultTTL is the TTL of the leases in the fault tests: etcd grants two
// seconds, and a lease whose renewals stall is lost locally well before.
const faultTTL = 2 * time.Second

// tenure is one holder's time with the key, as that holder saw it: from
// the moment Acquire returned to the moment it called Release, or its
// local deadline if the lease was lost first.
type tenure struct {
	worker     int
	fence      uint64
	start, end time.Time
}

// contention runs workers, each with its own client of every member,
// taking key in turn, and records every tenure. Call stop to end it; it
// returns the tenures.
type contention struct {
	mu       sync.Mutex
	tenures  []tenure
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	acquired chan struct{} // receives after every grant, without blocking
}

func contend(t *testing.T, c *etcdtest.Cluster, key string, workers int) *contention {
	return contendOver(t, c, key, workers, func(d driver.Locker) driver.Locker { return d })
}

// contendOver is contend with each worker's driver wrapped by wrap.
func contendOver(t *testing.T, c *etcdtest.Cluster, key string, workers int, wrap func(driver.Locker) driver.Locker) *contention {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ct := &contention{cancel: cancel, acquired: make(chan struct{}, 1)}
	for w := range workers {
		// A short call timeout moves a worker whose call hangs on a
		// stopped member to another member within a second.
		d := etcddriver.NewDriver(c.Client(t), &etcddriver.Options{CallTimeout: time.Second})
		l := dlock.New(wrap(d), &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: faultTTL}})
		t.Cleanup(func() { l.Close() })
		ct.wg.Go(func() { ct.work(ctx, l, w, key) })
	}
	t.Cleanup(ct.stop)
	return ct
}

func (ct *contention) work(ctx context.Context, l *dlock.Locker, w int, key string) {
	for ctx.Err() == nil {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		lease, err := l.Acquire(actx, key, nil)
		cancel()
		if err != nil {
			continue
		}
		tn := tenure{worker: w, fence: lease.Fence(), start: time.Now()}
		select {
		case ct.acquired <- struct{}{}:
		default:
		}
		hold := time.NewTimer(time.Duration(10+rand.IntN(40)) * time.Millisecond)
		select {
		case <-hold.C:
		case <-lease.Context().Done():
		}
		hold.Stop()
		tn.end = time.Now()
		if lease.Err() != nil {
			tn.end = lease.ValidUntil()
		}
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		lease.Release(rctx)
		cancel()
		ct.mu.Lock()
		ct.tenures = append(ct.tenures, tn)
		ct.mu.Unlock()
	}
}

func (ct *contention) stop() {
	ct.cancel()
	ct.wg.Wait()
}

// grants returns the number of tenures so far.
func (ct *contention) grants() int {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return len(ct.tenures)
}

// awaitGrants waits until n more grants were made, or fails the test
// after within.
func (ct *contention) awaitGrants(t *testing.T, n int, within time.Duration, why string) {
	t.Helper()
	want := ct.grants() + n
	deadline := time.Now().Add(within)
	for ct.grants() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d grants in %v; want %d: %s", ct.grants()-want+n, within, n, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// check stops the contention and checks its history: no two tenures
// overlap, and fences increase with time.
func (ct *contention) check(t *testing.T) []tenure {
	t.Helper()
	ts, violations := ct.violations()
	for _, v := range violations {
		t.Error(v)
	}
	if len(ts) == 0 {
		t.Fatalf("no grant at all")
	}
	return ts
}

// violations stops the contention and returns its tenures in time order
// and what in them breaks mutual exclusion or fencing.
func (ct *contention) violations() ([]tenure, []string) {
	ct.stop()
	ts := slices.Clone(ct.tenures)
	slices.SortFunc(ts, func(a, b tenure) int { return a.start.Compare(b.start) })
	var v []string
	for i := 1; i < len(ts); i++ {
		a, b := ts[i-1], ts[i]
		if b.start.Before(a.end) {
			v = append(v, fmt.Sprintf("two valid leases: worker %d held fence %d from %v to %v, worker %d got fence %d at %v",
				a.worker, a.fence, a.start.Format(time.StampMicro), a.end.Format(time.StampMicro),
				b.worker, b.fence, b.start.Format(time.StampMicro)))
		}
		if b.fence <= a.fence {
			v = append(v, fmt.Sprintf("fence %d granted after fence %d: fences must increase", b.fence, a.fence))
		}
	}
	return ts, v
}

// TestContentionCheckFails runs the fault tests' checker on a driver that
// grants a held key to anyone (with a fence of 1), and checks that it
// finds overlapping leases and fences that do not increase.
func TestContentionCheckFails(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ct := contendOver(t, c, "check/broken", 3, func(d driver.Locker) driver.Locker { return grantsHeld{d} })
	ct.awaitGrants(t, 30, 10*time.Second, "a driver that grants every attempt")
	_, v := ct.violations()
	var overlaps, fences int
	for _, s := range v {
		switch {
		case strings.HasPrefix(s, "two valid leases"):
			overlaps++
		case strings.HasPrefix(s, "fence "):
			fences++
		}
	}
	if overlaps == 0 || fences == 0 {
		t.Errorf("the checker found %d overlaps and %d fence errors in the history of a driver that grants held keys; want both", overlaps, fences)
	}
}

// grantsHeld is a broken driver: an attempt on a held key is granted,
// with fence 1.
type grantsHeld struct{ driver.Locker }

func (g grantsHeld) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	res, err := g.Locker.Acquire(ctx, req)
	if err == nil && !res.Acquired {
		return driver.Result{Acquired: true, Fence: 1}, nil
	}
	return res, err
}

// TestFaultLeaderKilled kills the leader (SIGKILL) while workers take a
// key in turn: no two leases overlap, fences increase, and the workers
// go on under the new leader and after the member is back.
func TestFaultLeaderKilled(t *testing.T) {
	c := etcdtest.Start(t, 3)
	ct := contend(t, c, "fault/leader-killed", 4)
	ct.awaitGrants(t, 10, 10*time.Second, "before the fault")
	leader := c.Leader(t)
	leader.Kill(t)
	ct.awaitGrants(t, 10, 15*time.Second, "after the leader was killed: the others elect a new one")
	leader.Restart(t)
	c.Leader(t)
	ct.awaitGrants(t, 10, 15*time.Second, "after the killed member came back")
	ts := ct.check(t)
	t.Logf("%d grants", len(ts))
}

// TestFaultMemberPaused stops the leader (SIGSTOP) for longer than the
// TTL while workers take a key in turn: the workers whose calls went to it
// lose their leases locally before the key is free, no two leases overlap,
// fences increase, and the others go on under a new leader. (A stopped
// follower is the milder case: no election.)
func TestFaultMemberPaused(t *testing.T) {
	start := time.Now()
	c := etcdtest.Start(t, 3)
	ct := contend(t, c, "fault/member-paused", 4)
	ct.awaitGrants(t, 10, 10*time.Second, "before the fault")
	victim := c.Leader(t)
	victim.Pause(t)
	resumed := false
	defer func() {
		if !resumed {
			victim.Resume(t)
		}
	}()
	// Calls that the clients' balancer sends to the stopped member time
	// out (CallTimeout, 1s) until gRPC's keep-alive drops its connection
	// (after 12s), so progress is slow meanwhile.
	const paused = 3
	ct.awaitGrants(t, paused, 25*time.Second, "while a member is paused")
	t.Logf("%d grants while paused, after %v", paused, time.Since(start))
	time.Sleep(faultTTL * 3 / 2)
	victim.Resume(t)
	resumed = true
	ct.awaitGrants(t, 10, 15*time.Second, "after the member resumed")
	ts := ct.check(t)
	t.Logf("%d grants in %v", len(ts), time.Since(start))
}

// TestFaultRefreshFailsAfterLoss checks what a holder sees when etcd
// freed its key while it was away: the key went to another, and the old
// holder's Refresh and Release report ErrNotHeld, not success.
func TestFaultRefreshFailsAfterLoss(t *testing.T) {
	c := etcdtest.Start(t, 3)
	ctx := testCtx(t)
	d1, d2 := etcddriver.NewDriver(c.Client(t), nil), etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d1.Close(); d2.Close() })
	l := dlock.New(d2, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second}})
	t.Cleanup(func() { l.Close() })
	key := "fault/refresh-after-loss"
	const tok = "old-holder-token"
	res, err := d1.Acquire(ctx, driverRequest(key, tok, time.Second))
	if err != nil || !res.Acquired {
		t.Fatalf("Acquire = %+v, %v", res, err)
	}
	lease, err := l.Acquire(ctx, key, nil)
	if err != nil {
		t.Fatalf("waiter's Acquire after the holder's expiry = %v", err)
	}
	defer lease.Release(ctx)
	if lease.Fence() <= res.Fence {
		t.Errorf("fence %d after the expired holder's %d: fences must increase", lease.Fence(), res.Fence)
	}
	if err := d1.Refresh(ctx, key, tok, time.Second); !errors.Is(err, errNotHeld) {
		t.Errorf("old holder's Refresh after its key went to another = %v; want ErrNotHeld", err)
	}
	if err := d1.Release(ctx, key, tok); !errors.Is(err, errNotHeld) {
		t.Errorf("old holder's Release after its key went to another = %v; want ErrNotHeld", err)
	}
	if err := lease.Err(); err != nil {
		t.Errorf("new holder's lease = %v after the old holder's calls; want held", err)
	}
}

// TestSubscribeMemberPaused subscribes through a client of one member
// that is paused: Subscribe must give up after the call timeout, not wait
// for the caller's context, so that the waiter falls back to polling.
func TestSubscribeMemberPaused(t *testing.T) {
	c := etcdtest.Start(t, 3)
	m := c.Members()[0]
	d := etcddriver.NewDriver(c.Client(t, m.ClientURL), &etcddriver.Options{CallTimeout: time.Second})
	t.Cleanup(func() { d.Close() })
	n := d.(driver.Notifier)
	_, cancel, err := n.Subscribe(testCtx(t), "fault/subscribe-paused")
	if err != nil {
		t.Fatalf("Subscribe before the pause = %v", err)
	}
	cancel()
	m.Pause(t)
	defer m.Resume(t)
	start := time.Now()
	ctx, stop := context.WithTimeout(context.Background(), 20*time.Second)
	defer stop()
	_, cancel, err = n.Subscribe(ctx, "fault/subscribe-paused-2")
	if err == nil {
		cancel()
		t.Fatalf("Subscribe through a paused member succeeded")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Subscribe through a paused member took %v (%v); want it to give up after the call timeout, 1s", took, err)
	}
	if !errors.Is(err, driver.ErrUnavailable) {
		t.Errorf("Subscribe through a paused member = %v; want ErrUnavailable", err)
	}
	// A call of the lock gives up as well.
	start = time.Now()
	_, err = d.Acquire(ctx, driverRequest("fault/acquire-paused", "tok", time.Second))
	if err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("Acquire through a paused member = %v after %v; want a failure after the call timeout", err, time.Since(start))
	}
}
