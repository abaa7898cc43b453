package etcddriver_test

import (
	"context"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
)

// TestWaiterWakesAfterWatchMemberKilled queues a waiter whose watch runs
// on one member of a 3-member cluster (its client knew only that member
// when it subscribed, then all of them), kills that member (kill -9), and
// releases the key through another member. The waiter retries only every
// 10 s and the holder's TTL is 30 s, so only the watch, resumed on
// another member, can wake it: within a second of the release. (A member
// paused with SIGSTOP keeps its connections open, and the watch on it
// stays silent until gRPC's keep-alive drops them: see Waiting in the
// package doc.)
func TestWaiterWakesAfterWatchMemberKilled(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fault  func(t *testing.T, m *etcdtest.Member)
		within time.Duration
	}{
		{"Killed", func(t *testing.T, m *etcdtest.Member) { m.Kill(t) }, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := etcdtest.Start(t, 3)
			ctx := testCtx(t)
			// The watch's member is a follower: killing the leader would
			// hold the holder's release up for an election (longer than
			// its 1 s CallTimeout), which is not what this test checks.
			other := c.Leader(t)
			victim := c.Members()[0]
			if victim == other {
				victim = c.Members()[1]
			}
			wcl := c.Client(t, victim.ClientURL)
			opts := &etcddriver.Options{CallTimeout: time.Second, Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 30 * time.Second, Retry: dlock.ExponentialBackoff(10*time.Second, 10*time.Second)}}}
			waiter := etcddriver.New(wcl, opts)
			defer waiter.Close()
			holder := etcddriver.New(c.Client(t, other.ClientURL), opts)
			defer holder.Close()
			const key = "wake/member-fault"
			lease, err := holder.Acquire(ctx, key, nil)
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				at  time.Time
				err error
			}
			got := make(chan result, 1)
			go func() {
				l, err := waiter.Acquire(ctx, key, nil)
				if err == nil {
					defer l.Release(context.Background())
				}
				got <- result{time.Now(), err}
			}()
			time.Sleep(300 * time.Millisecond) // the waiter's first attempt and watch
			wcl.SetEndpoints(c.Endpoints()...)
			tc.fault(t, victim)
			if err := lease.Release(ctx); err != nil {
				t.Fatal(err)
			}
			released := time.Now()
			select {
			case r := <-got:
				if r.err != nil {
					t.Fatalf("waiter's Acquire = %v", r.err)
				}
				if wake := r.at.Sub(released); wake > tc.within {
					t.Errorf("the waiter got the key %v after the release; want within %v", wake, tc.within)
				} else {
					t.Logf("the waiter got the key %v after the release", wake.Round(time.Millisecond))
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("the waiter did not get the key within 15 s of the release")
			}
		})
	}
}
