package etcddriver_test

import (
	"testing"

	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
)

// TestHoldersWithWaitersQueued queues two waiters behind a holder: their
// entries are in etcd, but Holders must report the holder alone, with
// its fence.
func TestHoldersWithWaitersQueued(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	const key = "fifo/holders"
	q := newQueue(t, c, key)
	q.wait(ctx, 0, 0)
	q.wait(ctx, 1, 0)
	if left := entriesLeft(t, c.Client(t), key); len(left) != 3 {
		t.Fatalf("entries %q; want the holder's and two waiters'", left)
	}
	l := etcddriver.New(c.Client(t), nil)
	defer l.Close()
	hs, err := l.Holders(ctx, key)
	if err != nil || len(hs) != 1 || hs[0].Fence != q.holder.Fence() {
		t.Errorf("Holders = %+v, %v; want the holder alone, fence %d", hs, err, q.holder.Fence())
	}
	if err := q.holder.Release(ctx); err != nil {
		t.Fatal(err)
	}
	q.results.Wait()
	if len(q.order) != 2 || q.order[0] != 0 {
		t.Errorf("order %v, errors %v; want [0 1]", q.order, q.errs)
	}
}
