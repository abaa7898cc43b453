package etcddriver_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestNoLeasesLeftAfterClose drives a Locker through what leaves leases
// behind in etcd: grants released (their leases kept for reuse), busy
// attempts (their leases kept for the token's next), attempts cut short
// by their contexts, semaphore slots, waits, and leases still held at
// Close. Once the Locker is closed, no etcd lease or key of the driver
// may outlive the TTL: within TTL plus etcd's expiry check (500 ms) and a
// second of margin, etcd must hold none.
func TestNoLeasesLeftAfterClose(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	cl := c.Client(t)
	const ttl = 2 * time.Second
	l := etcddriver.New(c.Client(t), &etcddriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: ttl}}})
	other := etcddriver.New(c.Client(t), &etcddriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: ttl}}})

	held, err := other.Acquire(ctx, "leak/busy", nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				key := fmt.Sprintf("leak/k%d", (g+i)%5)
				if lease, err := l.TryAcquire(ctx, key, nil); err == nil {
					lease.Release(ctx)
				}
				l.TryAcquire(ctx, "leak/busy", nil) // busy: a spare lease
				cctx, cancel := context.WithTimeout(ctx, time.Duration(1+i%3)*time.Millisecond)
				if lease, err := l.Acquire(cctx, key, nil); err == nil {
					lease.Release(ctx)
				}
				cancel()
				if lease, err := l.TryAcquire(ctx, "leak/sem", &dlock.LeaseOptions{Limit: 3}); err == nil {
					lease.Release(ctx)
				}
			}
		})
	}
	wg.Wait()
	for i := range 3 {
		if _, err := l.Acquire(ctx, fmt.Sprintf("leak/kept%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	held.Release(ctx)
	if err := other.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	closed := time.Now()
	var leases *clientv3.LeaseLeasesResponse
	var keys *clientv3.GetResponse
	for {
		if leases, err = cl.Leases(ctx); err != nil {
			t.Fatal(err)
		}
		if keys, err = cl.Get(ctx, etcddriver.DefaultPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly()); err != nil {
			t.Fatal(err)
		}
		if len(leases.Leases) == 0 && len(keys.Kvs) == 0 {
			break
		}
		if time.Since(closed) > ttl+1500*time.Millisecond {
			t.Fatalf("%v after Close: %d etcd leases and %d keys left (the TTL is %v)", time.Since(closed).Round(time.Millisecond), len(leases.Leases), len(keys.Kvs), ttl)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("nothing left %v after Close", time.Since(closed).Round(time.Millisecond))
}
