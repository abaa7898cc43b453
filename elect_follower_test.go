package dlock_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// heldBack is a driver whose first Acquire waits until release is
// closed, so that a test decides what happens before that attempt.
type heldBack struct {
	driver.Locker
	driver.Inspector
	release chan struct{}
	once    sync.Once
	entered chan struct{}
}

func (h *heldBack) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	h.once.Do(func() {
		close(h.entered)
		<-h.release
	})
	return h.Locker.Acquire(ctx, req)
}

// TestFollowerLearnsLeaderAtOnce: candidates that start together look for
// a leader before the election, find none, and then lose it: the follower
// learns of the winner from the attempt that found the key held, not a
// TTL later at its next look.
func TestFollowerLearnsLeaderAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		d := store.Driver()
		gate := &heldBack{Locker: d, Inspector: d.(driver.Inspector), release: make(chan struct{}), entered: make(chan struct{})}
		follower := dlock.New(gate, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute, Owner: "follower"}})
		defer follower.Close()
		seen := make(chan dlock.Holder, 1)
		done := make(chan error)
		go func() {
			done <- dlock.NewElection(follower, "leader", &dlock.ElectionOptions{
				OnLeader: func(h dlock.Holder) { seen <- h },
			}).Run(ctx, func(context.Context, *dlock.Lease) error { return nil })
		}()
		<-gate.entered // the follower looked (no leader yet) and is attempting

		leader := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute, Owner: "leader"}})
		defer leader.Close()
		lease, err := leader.TryAcquire(ctx, "leader", nil)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		close(gate.release)
		select {
		case h := <-seen:
			if h.Owner != "leader" || h.Fence != lease.Fence() {
				t.Errorf("OnLeader(%+v); want the leader, fence %d", h, lease.Fence())
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("the follower learned of the leader after %v; want at once (one round trip)", took)
			}
		case <-time.After(2 * time.Minute):
			t.Fatal("OnLeader never called")
		}
		cancel()
		<-done
	})
}
