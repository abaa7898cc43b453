package etcddriver_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// entriesLeft returns the etcd keys of the entries of key (holders and
// waiters) under the default prefix.
func entriesLeft(t *testing.T, cl *clientv3.Client, key string) []string {
	t.Helper()
	lo := etcddriver.DefaultPrefix + key + "\x00"
	resp, err := cl.Get(testCtx(t), lo, clientv3.WithRange(etcddriver.DefaultPrefix+key+"\x01"), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys
}

// TestWaitersCancelledAnywhereLeaveNoEntry runs waiters on one key whose
// contexts end at random moments (before, during and after their
// queued attempts, their handoffs and their releases), each on a
// Locker of its own. Once every call returned and the Lockers are
// closed, no entry may be left: an entry's lease has 30 s, and would
// keep the key from everyone that long.
func TestWaitersCancelledAnywhereLeaveNoEntry(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	const key = "cancel/anywhere"
	opts := &etcddriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 30 * time.Second}}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var granted int
	stop := time.Now().Add(3 * time.Second)
	for w := range 6 {
		l := etcddriver.New(c.Client(t), opts)
		wg.Go(func() {
			defer l.Close()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for time.Now().Before(stop) {
				actx, cancel := context.WithTimeout(ctx, time.Duration(1+r.IntN(60))*time.Millisecond)
				lease, err := l.Acquire(actx, key, nil)
				if err == nil {
					mu.Lock()
					granted++
					mu.Unlock()
					time.Sleep(time.Duration(r.IntN(3)) * time.Millisecond)
					lease.Release(actx) // may be cut short too: then ValidUntil ends it
				}
				cancel()
			}
		})
	}
	wg.Wait()
	if granted == 0 {
		t.Fatal("no waiter ever got the key")
	}
	if left := entriesLeft(t, c.Client(t), key); len(left) > 0 {
		t.Errorf("%d grants; entries left after every caller returned and the Lockers closed: %q", granted, left)
	}
}

// TestCloseUnderQueuedWaitersLeavesNoEntry closes a Locker while its
// waiters are queued behind a holder: once Close returned, their entries
// must be gone, and the key free as soon as the holder releases it.
func TestCloseUnderQueuedWaitersLeavesNoEntry(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	const key = "cancel/close"
	q := newQueue(t, c, key)
	busy := make(chan struct{}, 64)
	l := etcddriver.New(c.Client(t), patient(busy))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if lease, err := l.Acquire(ctx, key, nil); err == nil {
				t.Errorf("a waiter got the key %d while it was held", lease.Fence())
			}
		})
	}
	for range 8 {
		<-busy // each waiter's second busy answer is a queued attempt's
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	wg.Wait()
	if left := entriesLeft(t, c.Client(t), key); len(left) != 1 {
		t.Errorf("entries left after Close with the holder's: %q; want the holder's alone", left)
	}
	if err := q.holder.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if left := entriesLeft(t, c.Client(t), key); len(left) > 0 {
		t.Errorf("entries left after the holder's release: %q", left)
	}
}
