package etcddriver_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
)

// TestSemaphoreContentionNeverOverLimit runs 12 goroutines over 4
// Lockers of a 3-member cluster on a semaphore of 3 slots, with
// TryAcquire, waits and waits cut after 1–5 ms, and records each holder's
// tenure (from the grant to its Release call). At no moment may more
// than 3 tenures overlap, and every fence must be unique.
func TestSemaphoreContentionNeverOverLimit(t *testing.T) {
	c := etcdtest.Start(t, 3)
	const limit, key = 3, "sem/contention"
	type tenure struct {
		fence      uint64
		start, end time.Time
	}
	var mu sync.Mutex
	var tenures []tenure
	ctx, stop := context.WithTimeout(context.Background(), 2*time.Second)
	defer stop()
	var wg sync.WaitGroup
	var lockers []*dlock.Locker
	for range 4 {
		l := etcddriver.New(c.Client(t), &etcddriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 5 * time.Second}}})
		t.Cleanup(func() { l.Close() })
		lockers = append(lockers, l)
		semKey, sem := key, &dlock.LeaseOptions{Limit: limit}
		for range 3 {
			wg.Go(func() {
				for ctx.Err() == nil {
					var lease *dlock.Lease
					var err error
					switch rand.N(3) {
					case 0:
						lease, err = l.TryAcquire(ctx, semKey, sem)
					case 1:
						cctx, cancel := context.WithTimeout(ctx, time.Duration(1+rand.N(5))*time.Millisecond)
						lease, err = l.Acquire(cctx, semKey, sem)
						cancel()
					default:
						cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
						lease, err = l.Acquire(cctx, semKey, sem)
						cancel()
					}
					if err != nil {
						continue
					}
					tn := tenure{fence: lease.Fence(), start: time.Now()}
					time.Sleep(time.Duration(rand.N(20)) * time.Millisecond)
					tn.end = time.Now()
					if lease.Err() != nil {
						tn.end = lease.ValidUntil()
					}
					lease.Release(context.Background())
					mu.Lock()
					tenures = append(tenures, tn)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if len(tenures) < 20 {
		t.Fatalf("only %d grants in 2s", len(tenures))
	}
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	fences := map[uint64]bool{}
	for _, tn := range tenures {
		if fences[tn.fence] {
			t.Errorf("fence %d granted twice", tn.fence)
		}
		fences[tn.fence] = true
		edges = append(edges, edge{tn.start, +1}, edge{tn.end, -1})
	}
	// Ends before starts at the same instant.
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta
	})
	n, peak := 0, 0
	for _, e := range edges {
		n += e.delta
		peak = max(peak, n)
		if n > limit {
			t.Fatalf("%d holders at %v; the limit is %d", n, e.at.Format(time.StampMicro), limit)
		}
	}
	t.Logf("%d grants, at most %d holders at once", len(tenures), peak)
	for _, l := range lockers {
		l.Close()
	}
	probe := etcddriver.New(c.Client(t), nil)
	defer probe.Close()
	if hs, err := probe.Holders(testCtx(t), key); err != nil || len(hs) != 0 {
		t.Errorf("holders after every Locker closed: %v, %v; want none", hs, err)
	}
}
