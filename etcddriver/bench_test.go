package etcddriver_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// benchLock is one lock implementation under benchmark, for one client.
type benchLock interface {
	Lock(ctx context.Context) error
	Unlock(ctx context.Context) error
}

// benchLocks are the implementations compared, on the same server in the
// same run: dlock's etcd driver; etcd's own concurrency.Mutex (a session
// lease shared by all its locks, a queue of keys in revision order); and
// the least lock etcd allows (a transaction that puts the key if its
// create revision is 0, on a session lease, and a watch for its delete).
var benchLocks = []struct {
	name string
	new  func(b *testing.B, cl *clientv3.Client, key string) benchLock
}{
	{"dlock", newDlockBench},
	{"mutex", newMutexBench},
	{"txn", newTxnBench},
}

// BenchmarkEtcd compares the three locks: a pair (acquire and release) by
// one goroutine on a free key, and the pairs per second of 8 and 32
// goroutines, each with its own client, taking one key in turn.
//
//	go test -run '^$' -bench Etcd -benchtime 3s ./etcddriver
func BenchmarkEtcd(b *testing.B) {
	c := etcdtest.Start(b, 1)
	for _, bl := range benchLocks {
		b.Run("pair/"+bl.name, func(b *testing.B) {
			ctx := context.Background()
			l := bl.new(b, c.Client(b), "bench/pair/"+bl.name)
			for b.Loop() {
				if err := l.Lock(ctx); err != nil {
					b.Fatal(err)
				}
				if err := l.Unlock(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, g := range []int{8, 32} {
		for _, bl := range benchLocks {
			b.Run(fmt.Sprintf("contended-%d/%s", g, bl.name), func(b *testing.B) {
				key := fmt.Sprintf("bench/contended-%d/%s", g, bl.name)
				locks := make([]benchLock, g)
				for i := range locks {
					locks[i] = bl.new(b, c.Client(b), key)
				}
				var left atomic.Int64
				left.Store(int64(b.N))
				ctx := context.Background()
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for _, l := range locks {
					wg.Go(func() {
						for left.Add(-1) >= 0 {
							if err := l.Lock(ctx); err != nil {
								b.Error(err)
								return
							}
							if err := l.Unlock(ctx); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pairs/s")
			})
		}
	}
}

type dlockBench struct {
	l     *dlock.Locker
	key   string
	lease *dlock.Lease
}

func newDlockBench(b *testing.B, cl *clientv3.Client, key string) benchLock {
	l := etcddriver.New(cl, &etcddriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 15 * time.Second}}})
	b.Cleanup(func() { l.Close() })
	return &dlockBench{l: l, key: key}
}

func (d *dlockBench) Lock(ctx context.Context) (err error) {
	d.lease, err = d.l.Acquire(ctx, d.key, nil)
	return err
}

func (d *dlockBench) Unlock(ctx context.Context) error { return d.lease.Release(ctx) }

func newMutexBench(b *testing.B, cl *clientv3.Client, key string) benchLock {
	s, err := concurrency.NewSession(cl, concurrency.WithTTL(15))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return concurrency.NewMutex(s, "/"+key)
}

type txnBench struct {
	cl    *clientv3.Client
	key   string
	lease clientv3.LeaseID
}

func newTxnBench(b *testing.B, cl *clientv3.Client, key string) benchLock {
	s, err := concurrency.NewSession(cl, concurrency.WithTTL(15))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return &txnBench{cl: cl, key: "txn/" + key, lease: s.Lease()}
}

func (t *txnBench) Lock(ctx context.Context) error {
	for {
		resp, err := t.cl.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(t.key), "=", 0)).
			Then(clientv3.OpPut(t.key, "", clientv3.WithLease(t.lease))).
			Commit()
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
		wctx, cancel := context.WithCancel(ctx)
		wch := t.cl.Watch(wctx, t.key, clientv3.WithRev(resp.Header.Revision+1), clientv3.WithFilterPut())
	wait:
		for r := range wch {
			for _, ev := range r.Events {
				if ev.Type == clientv3.EventTypeDelete {
					break wait
				}
			}
		}
		cancel()
	}
}

func (t *txnBench) Unlock(ctx context.Context) error {
	_, err := t.cl.Delete(ctx, t.key)
	return err
}
