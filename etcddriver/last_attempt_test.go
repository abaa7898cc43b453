package etcddriver_test

import (
	"context"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
)

// TestFewRetriesNeverTwoHolders runs waiters whose retries run out after
// two (LimitRetry): their last attempt, with no backoff after it, is a
// plain Acquire, and comes often right after a release, as their watch's
// event of it is on its way. A waiter that got the key from that attempt
// cancels its subscription as it returns its lease: the cancel must not
// delete its entry, which frees the key under a valid lease.
func TestFewRetriesNeverTwoHolders(t *testing.T) {
	c := etcdtest.Start(t, 1)
	const key = "fifo/few-retries"
	ct := &contention{acquired: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	ct.cancel = cancel
	for w := range 6 {
		l := etcddriver.New(c.Client(t), &etcddriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{
			TTL:   faultTTL,
			Retry: dlock.LimitRetry(dlock.ExponentialBackoff(time.Millisecond, 3*time.Millisecond), 2),
		}}})
		t.Cleanup(func() { l.Close() })
		ct.wg.Go(func() { ct.work(ctx, l, w, key) })
	}
	t.Cleanup(ct.stop)
	time.Sleep(4 * time.Second)
	ts := ct.check(t)
	t.Logf("%d grants", len(ts))
}
