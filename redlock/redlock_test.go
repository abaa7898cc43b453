package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/conformance"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redlock"
)

func TestConformanceMem(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("Nodes%d", n), func(t *testing.T) {
			t.Parallel()
			conformance.Run(t, func(t *testing.T) *conformance.Harness {
				c := newMemCluster(n)
				return &conformance.Harness{
					NewDriver: func(t *testing.T) driver.Locker {
						d, _ := c.newDriver(t, suiteOptions)
						return d
					},
					Partitioned: func(t *testing.T) (driver.Locker, func()) {
						d, fs := c.newDriver(t, suiteOptions)
						return d, func() { partitionMajority(fs) }
					},
				}
			})
		})
	}
}

// suiteOptions are the options of the drivers the conformance suite tests.
// The suite fails a case on any error, transient ones included, and this
// machine may be loaded enough to stall a call for a second: the node
// timeout is set long, so that only a broken contract fails the suite. It
// is still cut to the validity window of the suite's short TTL (300ms).
var suiteOptions = &redlock.Options{NodeTimeout: 2 * time.Second}

func TestNewRejects(t *testing.T) {
	c := newMemCluster(3)
	a, b, x := c.raw(t, 0), c.raw(t, 1), c.raw(t, 2)
	for _, tc := range []struct {
		name  string
		nodes []driver.Locker
		opts  *redlock.Options
		want  string
	}{
		{"NoNodes", nil, nil, "at least 3"},
		{"TwoNodes", []driver.Locker{a, b}, nil, "at least 3"},
		{"NilNode", []driver.Locker{a, nil, b}, nil, "node 1 is nil"},
		{"Duplicate", []driver.Locker{a, b, a}, nil, "nodes 0 and 2 are the same"},
		{"NoFenceRaiser", []driver.Locker{a, b, plain{x}}, nil, "cannot raise fences"},
		{"NoFenceFloors", []driver.Locker{a, b, raiseOnly{x}}, nil, "node 2 (redlock_test.raiseOnly) does not honour proposed fence floors"},
		{"NegativeNodeTimeout", []driver.Locker{a, b, x}, &redlock.Options{NodeTimeout: -1}, "NodeTimeout"},
		{"NegativeDrift", []driver.Locker{a, b, x}, &redlock.Options{Drift: -1}, "Drift"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := redlock.NewDriver(tc.nodes, tc.opts)
			if !errors.Is(err, dlock.ErrInvalid) || !strings.Contains(fmt.Sprint(err), tc.want) {
				t.Errorf("New = %v, %v; want an error wrapping ErrInvalid that says %q", d, err, tc.want)
			}
		})
	}
	// Without fencing, nodes need no FenceRaiser.
	d, err := redlock.NewDriver([]driver.Locker{plain{a}, plain{b}, plain{x}}, &redlock.Options{DisableFencing: true})
	if err != nil {
		t.Fatalf("New without fencing over nodes that cannot raise fences = %v", err)
	}
	l := dlock.New(d, nil)
	defer l.Close()
	// It cannot notify or inspect: it says so by the rule for wrapping
	// drivers, at once, and dlock treats it as it treats a driver without
	// the capabilities.
	ctx := t.Context()
	if _, _, err := d.(driver.Notifier).Subscribe(ctx, "k"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Subscribe with no node a Notifier = %v; want an error wrapping ErrUnsupported", err)
	}
	if _, _, err := d.(driver.Inspector).Inspect(ctx, "k"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Inspect with no node an Inspector = %v; want an error wrapping ErrUnsupported", err)
	}
	if _, _, err := soleHolder(l.Holders(ctx, "k")); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("dlock Holder over it = %v; want an error wrapping ErrUnsupported", err)
	}
}

func TestCapabilities(t *testing.T) {
	c := newMemCluster(3)
	d, _ := c.driver(t, nil)
	for name, ok := range map[string]bool{
		"Notifier":       is[driver.Notifier](d),
		"Inspector":      is[driver.Inspector](d),
		"BatchRefresher": is[driver.BatchRefresher](d),
	} {
		if !ok {
			t.Errorf("a Redlock over memdriver nodes is not a driver.%s", name)
		}
	}
	if is[driver.FenceRaiser](d) {
		t.Errorf("a Redlock driver claims driver.FenceRaiser, which it does not implement")
	}
	// A quorum may be a node of another: with fencing it honours a floor,
	// which it proposes to its nodes.
	const floor = 1 << 60
	req := driver.Request{Key: "floor", Token: rand(), TTL: time.Minute}
	if res, err := d.(redlock.FloorAcquirer).AcquireFloor(t.Context(), req, floor); err != nil || !res.Acquired || res.Fence < floor {
		t.Errorf("AcquireFloor of a Redlock with fencing = %+v, %v; want a grant with a fence of at least %d", res, err, uint64(floor))
	}
	bare, _ := c.driver(t, &redlock.Options{DisableFencing: true})
	if _, err := bare.(redlock.FloorAcquirer).AcquireFloor(t.Context(), req, floor); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("AcquireFloor of a Redlock without fencing = %v; want ErrUnsupported: its leases carry fence 0", err)
	}
}

func is[T any](v any) bool { _, ok := v.(T); return ok }

// nodeTimeout is the per-node timeout of the fault tests.
const nodeTimeout = 50 * time.Millisecond

// TestFailingSubsets fails every subset of nodes of clusters of 3 and 5, a
// node failing by not answering (partition), by answering too slowly
// (latency beyond the node timeout) or by refusing (unavailable); the mode
// varies across subsets. With a majority alive the lock works and stays
// exclusive; without, every attempt fails with a QuorumError within the
// node timeout plus the short release of unknown nodes, and leaves no node
// held. Time is synthetic (testing/synctest), so the bounds are exact.
func TestFailingSubsets(t *testing.T) {
	for _, n := range []int{3, 5} {
		for mask := range 1 << n {
			t.Run(fmt.Sprintf("Nodes%d/Failed%0*b", n, n, mask), func(t *testing.T) {
				t.Parallel()
				synctest.Test(t, func(t *testing.T) { failingSubset(t, n, mask) })
			})
		}
	}
}

func failingSubset(t *testing.T, n, mask int) {
	c := newMemCluster(n)
	var modes []string
	fail := func(fs []*conformance.FaultyDriver) {
		modes = modes[:0]
		for i, f := range fs {
			if mask&(1<<i) == 0 {
				continue
			}
			switch (mask + i) % 3 {
			case 0:
				f.Partition()
				modes = append(modes, fmt.Sprintf("node %d partitioned", i))
			case 1:
				f.SetLatency(10 * nodeTimeout)
				modes = append(modes, fmt.Sprintf("node %d slow", i))
			case 2:
				f.Refuse()
				modes = append(modes, fmt.Sprintf("node %d refusing", i))
			}
		}
	}
	opts := &redlock.Options{NodeTimeout: nodeTimeout}
	d1, f1 := c.newDriver(t, opts)
	fail(f1)
	d2, f2 := c.newDriver(t, opts)
	fail(f2)
	t.Logf("faults: %v", modes)
	lopts := &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 10 * time.Second}}
	l1, l2 := dlock.New(d1, lopts), dlock.New(d2, lopts)
	defer l1.Close()
	defer l2.Close()
	ctx := t.Context()
	const key = "k"

	if alive := n - bits.OnesCount(uint(mask)); alive <= n/2 {
		start := time.Now()
		lease, err := l1.TryAcquire(ctx, key, nil)
		took := time.Since(start)
		var qe *redlock.QuorumError
		if !errors.As(err, &qe) {
			t.Fatalf("TryAcquire with %d of %d nodes alive = %v, %v; want a *QuorumError", alive, n, lease, err)
		}
		if qe.Got > alive || qe.Need != n/2+1 || len(qe.Errs) != n-alive {
			t.Errorf("QuorumError{Got: %d, Need: %d, %d Errs} with %d of %d alive: %v", qe.Got, qe.Need, len(qe.Errs), alive, n, qe)
		}
		if limit := nodeTimeout + nodeTimeout/4; took > limit {
			t.Errorf("failed attempt took %v; want at most the node timeout plus the release of unknown nodes, %v", took, limit)
		}
		// TryAcquire returned once a majority was known free; the
		// other nodes are undone in the background.
		synctest.Wait()
		for i := range n {
			if h, held := c.holder(t, i, key); held {
				t.Errorf("node %d still held by %+v after a failed attempt: it must be released", i, h)
			}
		}
		return
	}
	lease, err := l1.TryAcquire(ctx, key, nil)
	if err != nil {
		t.Fatalf("TryAcquire of a free key with a majority alive = %v", err)
	}
	synctest.Wait() // the grants that came after the majority's land too
	if _, err := l2.TryAcquire(ctx, key, nil); !errors.Is(err, dlock.ErrNotAcquired) || errors.As(err, new(*redlock.QuorumError)) {
		t.Errorf("second TryAcquire of a held key = %v; want ErrNotAcquired for a busy key, not a QuorumError", err)
	}
	for i := range n {
		if _, held := c.holder(t, i, key); held != (mask&(1<<i) == 0) {
			t.Errorf("node %d held = %v; want every healthy node and no failed one to hold the lease", i, held)
		}
	}
	if err := lease.Release(ctx); err != nil {
		t.Errorf("Release = %v", err)
	}
	lease2, err := l2.TryAcquire(ctx, key, nil)
	if err != nil {
		t.Fatalf("TryAcquire after the release = %v", err)
	}
	if lease2.Fence() <= lease.Fence() {
		t.Errorf("fence %d after fence %d: fences must increase", lease2.Fence(), lease.Fence())
	}
	if err := lease2.Release(ctx); err != nil {
		t.Errorf("Release = %v", err)
	}
}

// countRaise counts RaiseFence calls; it hides other capabilities.
type countRaise struct {
	driver.Locker
	n atomic.Int32
}

func (c *countRaise) RaiseFence(ctx context.Context, key, token string, fence uint64) error {
	c.n.Add(1)
	return c.Locker.(driver.FenceRaiser).RaiseFence(ctx, key, token, fence)
}

func (c *countRaise) AcquireFloor(ctx context.Context, req driver.Request, floor uint64) (driver.Result, error) {
	return c.Locker.(redlock.FloorAcquirer).AcquireFloor(ctx, req, floor)
}

// raiseOnly raises fences but hides every other capability, fence floors
// included.
type raiseOnly struct{ driver.Locker }

func (r raiseOnly) RaiseFence(ctx context.Context, key, token string, fence uint64) error {
	return r.Locker.(driver.FenceRaiser).RaiseFence(ctx, key, token, fence)
}

func TestFenceWriteBack(t *testing.T) {
	ctx := t.Context()
	c := newMemCluster(3)
	const key = "k"
	// Node 2 has granted 5 fences the others have not seen, above what
	// this client's clock proposes.
	raw2 := c.raw(t, 2)
	high := uint64(time.Now().UnixMicro()) + 1e12
	want := high + 5
	for range 5 {
		tok := rand()
		if _, err := raw2.(redlock.FloorAcquirer).AcquireFloor(ctx, driver.Request{Key: key, Token: tok, TTL: time.Minute}, high); err != nil {
			t.Fatal(err)
		}
		raw2.Release(ctx, key, tok)
	}
	// Node 0 refuses, so the majority is nodes 1 and 2.
	f0 := conformance.Faulty(c.stores[0].Driver())
	nodes := []*countRaise{{Locker: f0}, {Locker: c.stores[1].Driver()}, {Locker: c.stores[2].Driver()}}
	d, err := redlock.NewDriver([]driver.Locker{nodes[0], nodes[1], nodes[2]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	f0.Refuse()
	req := driver.Request{Key: key, Token: rand(), TTL: time.Minute, Owner: "a"}
	res, err := d.Acquire(ctx, req)
	if err != nil || !res.Acquired || res.Fence != want {
		t.Fatalf("Acquire = %+v, %v; want the largest node fence, %d", res, err, want)
	}
	for i := 1; i < 3; i++ {
		if h, _ := c.holder(t, i, key); h.Fence != want {
			t.Errorf("node %d holds fence %d; want every granting node raised to %d", i, h.Fence, want)
		}
	}
	if r := nodes[0].n.Load() + nodes[1].n.Load() + nodes[2].n.Load(); r != 1 {
		t.Errorf("%d RaiseFence calls; want 1, to the node that granted a smaller fence", r)
	}
	f0.Heal()
	if err := d.Release(ctx, key, req.Token); err != nil {
		t.Fatal(err)
	}
	// Nodes 0 and 1 alone now grant above it.
	d2, fs := c.driver(t, nil)
	fs[2].Refuse()
	res2, err := d2.Acquire(ctx, driver.Request{Key: key, Token: rand(), TTL: time.Minute})
	if err != nil || !res2.Acquired || res2.Fence <= want {
		t.Fatalf("Acquire on nodes 0 and 1 = %+v, %v; want a fence above %d", res2, err, want)
	}
	// Every node grants the proposed floor, so there is nothing to raise.
	before := nodes[0].n.Load() + nodes[1].n.Load() + nodes[2].n.Load()
	res3, err := d.Acquire(ctx, driver.Request{Key: "other", Token: rand(), TTL: time.Minute})
	if err != nil || !res3.Acquired {
		t.Fatalf("Acquire = %+v, %v", res3, err)
	}
	if r := nodes[0].n.Load() + nodes[1].n.Load() + nodes[2].n.Load() - before; r != 0 {
		t.Errorf("%d RaiseFence calls when every node granted fence %d; want none", r, res3.Fence)
	}
}

func rand() string { return fmt.Sprint(time.Now().UnixNano(), randN.Add(1)) }

var randN atomic.Int64

func TestDisableFencing(t *testing.T) {
	ctx := t.Context()
	c := newMemCluster(3)
	nodes := []driver.Locker{plain{c.raw(t, 0)}, plain{c.raw(t, 1)}, plain{c.raw(t, 2)}}
	d, err := redlock.NewDriver(nodes, &redlock.Options{DisableFencing: true})
	if err != nil {
		t.Fatal(err)
	}
	l := dlock.New(d, nil)
	defer l.Close()
	lease, err := l.TryAcquire(ctx, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if lease.Fence() != 0 {
		t.Errorf("Fence() = %d with fencing disabled; want 0", lease.Fence())
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestHolderTTLHint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		c := newMemCluster(3)
		const key = "k"
		tok := rand()
		// The holder has node 0 for 5s and node 1 for 8s; node 2 is free.
		for i, ttl := range []time.Duration{5 * time.Second, 8 * time.Second} {
			if _, err := c.raw(t, i).Acquire(ctx, driver.Request{Key: key, Token: tok, TTL: ttl}); err != nil {
				t.Fatal(err)
			}
		}
		d, _ := c.driver(t, nil)
		res, err := d.Acquire(ctx, driver.Request{Key: key, Token: rand(), TTL: time.Minute})
		if err != nil || res.Acquired {
			t.Fatalf("Acquire = %+v, %v; want busy", res, err)
		}
		// A majority is free when node 0 expires.
		if res.HolderTTL != 5*time.Second {
			t.Errorf("HolderTTL = %v; want 5s, when a majority of nodes may be free", res.HolderTTL)
		}
		// Acquire returned once a majority was known free; node 2's
		// undo runs in the background.
		synctest.Wait()
		if _, held := c.holder(t, 2, key); held {
			t.Errorf("node 2 still held after a busy attempt and its undo")
		}
	})
}

func TestInspectMajority(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		c := newMemCluster(3)
		const key = "k"
		take := func(i int, owner string, ttl time.Duration) {
			t.Helper()
			if _, err := c.raw(t, i).Acquire(ctx, driver.Request{Key: key, Token: owner, TTL: ttl, Owner: owner}); err != nil {
				t.Fatal(err)
			}
		}
		d, _ := c.driver(t, nil)
		in := d.(driver.Inspector)
		if _, ok, err := in.Inspect(ctx, key); ok || err != nil {
			t.Fatalf("Inspect of a free key = %v, %v", ok, err)
		}
		take(0, "a", 5*time.Second)
		take(2, "b", 9*time.Second)
		if h, ok, err := in.Inspect(ctx, key); ok || err != nil {
			t.Errorf("Inspect with no majority holder = %+v, %v, %v; want free", h, ok, err)
		}
		take(1, "a", 8*time.Second)
		h, ok, err := in.Inspect(ctx, key)
		if !ok || err != nil || h.Owner != "a" || h.TTL != 5*time.Second {
			t.Errorf("Inspect = %+v, %v, %v; want owner a for 5s, until fewer than a majority hold it", h, ok, err)
		}
	})
}

func TestRefreshQuorum(t *testing.T) {
	ctx := t.Context()
	c := newMemCluster(3)
	d, fs := c.driver(t, &redlock.Options{NodeTimeout: nodeTimeout})
	const key = "k"
	tok := rand()
	if res, err := d.Acquire(ctx, driver.Request{Key: key, Token: tok, TTL: time.Minute}); err != nil || !res.Acquired {
		t.Fatalf("Acquire = %+v, %v", res, err)
	}
	c.awaitHeld(t, key)
	// Node 0 forgets the lock, as after a restart without persistence.
	c.raw(t, 0).Release(ctx, key, tok)
	if err := d.Refresh(ctx, key, tok, time.Minute); err != nil {
		t.Errorf("Refresh with 2 of 3 nodes holding = %v", err)
	}
	// Node 1 cut off: one node holds, one may: not lost, but failed.
	fs[1].Partition()
	err := d.Refresh(ctx, key, tok, time.Minute)
	var qe *redlock.QuorumError
	if !errors.As(err, &qe) || errors.Is(err, driver.ErrNotHeld) || !qe.Timeout() {
		t.Errorf("Refresh with one node holding and one cut off = %v; want a transient QuorumError, not ErrNotHeld", err)
	}
	if !strings.Contains(fmt.Sprint(err), "node 0") || !strings.Contains(fmt.Sprint(err), "node 1") {
		t.Errorf("QuorumError %q does not name the failed nodes", err)
	}
	fs[1].Heal()
	// Node 1 forgets it too: a majority does not hold it, so it is lost.
	c.raw(t, 1).Release(ctx, key, tok)
	if err := d.Refresh(ctx, key, tok, time.Minute); !errors.Is(err, driver.ErrNotHeld) {
		t.Errorf("Refresh with 1 of 3 nodes holding = %v; want ErrNotHeld", err)
	}
	if err := d.Release(ctx, key, tok); !errors.Is(err, driver.ErrNotHeld) {
		t.Errorf("Release with 1 of 3 nodes holding = %v; want ErrNotHeld", err)
	}
	if _, held := c.holder(t, 2, key); held {
		t.Errorf("node 2 still held after Release")
	}
}

func TestReleaseToleratesMinority(t *testing.T) {
	ctx := t.Context()
	c := newMemCluster(5)
	d, fs := c.driver(t, &redlock.Options{NodeTimeout: nodeTimeout})
	const key = "k"
	tok := rand()
	if res, err := d.Acquire(ctx, driver.Request{Key: key, Token: tok, TTL: time.Minute}); err != nil || !res.Acquired {
		t.Fatalf("Acquire = %+v, %v", res, err)
	}
	fs[0].Refuse()
	fs[1].Partition()
	if err := d.Release(ctx, key, tok); err != nil {
		t.Errorf("Release with 3 of 5 nodes reachable = %v; want success, the key is free for a majority", err)
	}
	for i := 2; i < 5; i++ {
		if _, held := c.holder(t, i, key); held {
			t.Errorf("node %d still held after Release", i)
		}
	}
}

func TestRefreshBatchMajority(t *testing.T) {
	ctx := t.Context()
	c := newMemCluster(3)
	// Node 2 cannot batch: it gets one Refresh per request.
	nodes := []driver.Locker{c.raw(t, 0), c.raw(t, 1), &countRaise{Locker: c.stores[2].Driver()}}
	d, err := redlock.NewDriver(nodes, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a, b := rand(), rand()
	for _, k := range []string{"a", "b"} {
		tok := map[string]string{"a": a, "b": b}[k]
		if res, err := d.Acquire(ctx, driver.Request{Key: k, Token: tok, TTL: time.Minute}); err != nil || !res.Acquired {
			t.Fatalf("Acquire = %+v, %v", res, err)
		}
	}
	c.awaitHeld(t, "a") // a late grant must not undo the releases below
	c.awaitHeld(t, "b")
	c.raw(t, 0).Release(ctx, "a", a) // "a" still on 2 of 3
	c.raw(t, 0).Release(ctx, "b", b)
	c.raw(t, 1).Release(ctx, "b", b) // "b" on 1 of 3: lost
	errs := d.(driver.BatchRefresher).RefreshBatch(ctx, []driver.RefreshRequest{
		{Key: "a", Token: a, TTL: time.Minute},
		{Key: "b", Token: b, TTL: time.Minute},
		{Key: "c", Token: a, TTL: time.Minute},
	})
	if len(errs) != 3 || errs[0] != nil || !errors.Is(errs[1], driver.ErrNotHeld) || !errors.Is(errs[2], driver.ErrNotHeld) {
		t.Errorf("RefreshBatch = %v; want [nil, ErrNotHeld, ErrNotHeld]", errs)
	}
}

// TestNotifyMajority checks that a subscription wakes only when releases
// were seen on a majority of nodes: a waiter's own failed attempts release
// a minority, and must not wake it again and again.
func TestNotifyMajority(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		c := newMemCluster(3)
		d, _ := c.driver(t, nil)
		ch, cancel, err := d.(driver.Notifier).Subscribe(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
		release := func(i int) {
			t.Helper()
			raw := c.raw(t, i)
			tok := rand()
			raw.Acquire(ctx, driver.Request{Key: "k", Token: tok, TTL: time.Minute})
			if err := raw.Release(ctx, "k", tok); err != nil {
				t.Fatal(err)
			}
		}
		woken := func() bool {
			synctest.Wait()
			select {
			case <-ch:
				return true
			default:
				return false
			}
		}
		release(0)
		release(0)
		if woken() {
			t.Errorf("woken by releases on 1 of 3 nodes")
		}
		release(2)
		if !woken() {
			t.Errorf("not woken by releases on 2 of 3 nodes")
		}
		release(1)
		if woken() {
			t.Errorf("woken again by a release on 1 node after a wakeup")
		}
	})
}

// spyLocker counts a driver's acquire attempts and keeps it a Notifier.
type spyLocker struct {
	driver.Locker
	attempts atomic.Int32
}

func (s *spyLocker) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	s.attempts.Add(1)
	return s.Locker.Acquire(ctx, req)
}

func (s *spyLocker) Subscribe(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	return s.Locker.(driver.Notifier).Subscribe(ctx, key)
}

// TestWaiterDoesNotSpin: a holder has a majority; a waiter takes the free
// minority at each attempt and releases it. Its own releases must not wake
// it, so it keeps to its backoff.
func TestWaiterDoesNotSpin(t *testing.T) {
	ctx := t.Context()
	c := newMemCluster(3)
	tok := rand()
	for i := range 2 {
		if _, err := c.raw(t, i).Acquire(ctx, driver.Request{Key: "k", Token: tok, TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	d, _ := c.newDriver(t, nil)
	spy := &spyLocker{Locker: d}
	l := dlock.New(spy, &dlock.Options{LeaseOptions: dlock.LeaseOptions{Retry: dlock.ExponentialBackoff(100*time.Millisecond, 100*time.Millisecond)}})
	defer l.Close()
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := l.Acquire(wctx, "k", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire of a held key = %v", err)
	}
	if n := spy.attempts.Load(); n > 15 {
		t.Errorf("%d attempts in 500ms with a 100ms backoff: the waiter's own releases wake it", n)
	}
}

// TestLeaseThroughNodeLoss: a holder keeps its lease, refreshed by dlock,
// through the loss of one node of three, and loses it when a second is cut
// off, before the nodes still holding it expire it.
func TestLeaseThroughNodeLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		c := newMemCluster(3)
		d, fs := c.newDriver(t, &redlock.Options{NodeTimeout: nodeTimeout})
		const ttl = time.Second
		l := dlock.New(d, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: ttl}})
		defer l.Close()
		other, _ := c.driver(t, nil)
		lease, err := l.Acquire(ctx, "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		fs[0].Partition()
		time.Sleep(10 * ttl)
		if err := lease.Err(); err != nil {
			t.Fatalf("lease lost with 2 of 3 nodes reachable: %v", err)
		}
		if res, err := other.Acquire(ctx, driver.Request{Key: "k", Token: rand(), TTL: ttl}); err != nil || res.Acquired {
			t.Fatalf("another client's Acquire of the held key = %+v, %v", res, err)
		}
		fs[1].Partition()
		cut := time.Now()
		<-lease.Context().Done()
		lost := time.Since(cut)
		if !errors.Is(lease.Err(), dlock.ErrLeaseLost) {
			t.Errorf("lease.Err() = %v; want ErrLeaseLost", lease.Err())
		}
		if lost > ttl {
			t.Errorf("lease lost %v after a majority was cut off; want within the TTL %v", lost, ttl)
		}
		for _, i := range []int{1, 2} {
			if _, held := c.holder(t, i, "k"); !held {
				t.Errorf("node %d expired the lock before the lease was lost", i)
			}
		}
		if res, err := other.Acquire(ctx, driver.Request{Key: "k", Token: rand(), TTL: ttl}); err != nil || res.Acquired {
			t.Errorf("another client's Acquire when the lease was lost = %+v, %v; want busy", res, err)
		}
	})
}

// TestRefreshCountsMajorityTime: a refresh holds when a majority confirmed
// within the validity window, even if a dead node makes the round last
// longer (here a node timeout as long as the window).
func TestRefreshCountsMajorityTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		c := newMemCluster(3)
		d, fs := c.driver(t, &redlock.Options{NodeTimeout: time.Hour})
		const ttl = time.Second
		tok := rand()
		if res, err := d.Acquire(ctx, driver.Request{Key: "k", Token: tok, TTL: ttl}); err != nil || !res.Acquired {
			t.Fatalf("Acquire = %+v, %v", res, err)
		}
		c.awaitHeld(t, "k")
		fs[0].Partition()
		start := time.Now()
		if err := d.Refresh(ctx, "k", tok, ttl); err != nil {
			t.Errorf("Refresh confirmed at once by 2 of 3 nodes = %v", err)
		}
		if took := time.Since(start); took >= ttl {
			t.Errorf("Refresh took %v; the node timeout must stop at the validity window", took)
		}
		errs := d.(driver.BatchRefresher).RefreshBatch(ctx, []driver.RefreshRequest{{Key: "k", Token: tok, TTL: ttl}})
		if errs[0] != nil {
			t.Errorf("RefreshBatch confirmed at once by 2 of 3 nodes = %v", errs[0])
		}
		// A majority that cannot confirm within the window fails the
		// refresh, transiently.
		fs[1].SetLatency(ttl)
		start = time.Now()
		if err := d.Refresh(ctx, "k", tok, ttl); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, driver.ErrNotHeld) {
			t.Errorf("Refresh with a majority beyond the window = %v; want a transient error", err)
		}
		if took := time.Since(start); took >= ttl {
			t.Errorf("Refresh took %v; the node timeout must stop at the validity window", took)
		}
	})
}

// late is a node that answers after a fixed delay, ignoring its context, as
// a node whose reply is slow and whose client does not give up would.
type late struct {
	driver.Locker
	delay time.Duration
}

func (n late) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	time.Sleep(n.delay)
	return n.Locker.Acquire(context.WithoutCancel(ctx), req)
}

func (n late) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	time.Sleep(n.delay)
	return n.Locker.Refresh(context.WithoutCancel(ctx), key, token, ttl)
}

// TestLateMajority: grants and refreshes that reach a majority only after
// the validity window do not count, and a late grant is released.
func TestLateMajority(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		c := newMemCluster(3)
		const ttl = time.Second
		nodes := []driver.Locker{late{c.raw(t, 0), 0}, late{c.raw(t, 1), 0}, late{c.raw(t, 2), 0}}
		d, err := redlock.NewDriver(nodes, &redlock.Options{DisableFencing: true})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		tok := rand()
		if res, err := d.Acquire(ctx, driver.Request{Key: "k", Token: tok, TTL: ttl}); err != nil || !res.Acquired {
			t.Fatalf("Acquire = %+v, %v", res, err)
		}
		// Nodes 0 and 1 answer after the window (TTL − drift, 988ms) but
		// before the lock expires.
		const delay = ttl - 5*time.Millisecond
		slow, err := redlock.NewDriver([]driver.Locker{late{c.raw(t, 0), delay}, late{c.raw(t, 1), delay}, c.raw(t, 2)}, &redlock.Options{DisableFencing: true})
		if err != nil {
			t.Fatal(err)
		}
		defer slow.Close()
		if err := slow.Refresh(ctx, "k", tok, ttl); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, driver.ErrNotHeld) {
			t.Errorf("Refresh confirmed by a majority after the TTL = %v; want a transient error wrapping context.DeadlineExceeded", err)
		}
		if err := d.Release(ctx, "k", tok); err != nil {
			t.Fatal(err)
		}
		res, err := slow.Acquire(ctx, driver.Request{Key: "k", Token: rand(), TTL: ttl})
		if res.Acquired || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Acquire granted by a majority after the TTL = %+v, %v; want an error wrapping context.DeadlineExceeded", res, err)
		}
		for i := range 3 {
			if h, held := c.holder(t, i, "k"); held {
				t.Errorf("node %d still held by %+v after a late grant", i, h)
			}
		}
	})
}

// slowAcquire delays Acquire only, so that a release can overtake it.
type slowAcquire struct {
	driver.Locker
	delay time.Duration
}

func (s slowAcquire) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	time.Sleep(s.delay)
	return s.Locker.Acquire(ctx, req)
}

// TestReleaseAwaitsLateGrants: Acquire returns once a majority granted;
// a Release right after must still free the slow node, whose grant lands
// after Acquire returned, instead of overtaking it and leaving the node
// locked until the TTL.
func TestReleaseAwaitsLateGrants(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		c := newMemCluster(3)
		d, err := redlock.NewDriver([]driver.Locker{c.raw(t, 0), c.raw(t, 1), slowAcquire{c.raw(t, 2), 50 * time.Millisecond}},
			&redlock.Options{DisableFencing: true})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		req := driver.Request{Key: "k", Token: rand(), TTL: time.Minute}
		start := time.Now()
		if res, err := d.Acquire(ctx, req); err != nil || !res.Acquired {
			t.Fatalf("Acquire = %+v, %v", res, err)
		}
		if took := time.Since(start); took != 0 {
			t.Errorf("Acquire took %v; want it to return with the majority, before the slow node", took)
		}
		if err := d.Release(ctx, req.Key, req.Token); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if h, held := c.holder(t, 2, "k"); held {
			t.Errorf("slow node still held by %+v after Release: the release overtook its late grant", h)
		}
	})
}

// TestNewLocker: New returns the portable type, configured by opts.Lock,
// and refuses what NewDriver refuses.
func TestNewLocker(t *testing.T) {
	c := newMemCluster(3)
	l, err := redlock.New([]driver.Locker{c.raw(t, 0), c.raw(t, 1), c.raw(t, 2)}, &redlock.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 7 * time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lease, err := l.TryAcquire(t.Context(), "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(lease.ValidUntil()); left <= 5*time.Second || left > 7*time.Second {
		t.Errorf("lease valid for %v after the acquire; want Options.Lock's TTL 7s, less drift and the round trip", left)
	}
	if err := lease.Release(t.Context()); err != nil {
		t.Error(err)
	}
	if _, err := redlock.New([]driver.Locker{c.raw(t, 0)}, nil); !errors.Is(err, dlock.ErrInvalid) {
		t.Errorf("New over one node = %v; want ErrInvalid", err)
	}
}

// fencesOnly keeps a node's fence capabilities, which fencing needs, and
// hides the others.
type fencesOnly struct{ raiseOnly }

func (f fencesOnly) AcquireFloor(ctx context.Context, req driver.Request, floor uint64) (driver.Result, error) {
	return f.Locker.(redlock.FloorAcquirer).AcquireFloor(ctx, req, floor)
}

// TestConformanceMemNoCapabilities runs the suite against a Redlock whose
// nodes can neither notify nor inspect: it implements Notifier and
// Inspector and answers ErrUnsupported from them, by the driver package's
// rule for wrapping drivers, and passes with those cases skipped.
func TestConformanceMemNoCapabilities(t *testing.T) {
	t.Parallel()
	opts := suiteOptions
	conformance.Run(t, func(t *testing.T) *conformance.Harness {
		c := newMemCluster(3)
		newDriver := func(t *testing.T) (driver.Locker, []*conformance.FaultyDriver) {
			var nodes []driver.Locker
			var fs []*conformance.FaultyDriver
			for _, s := range c.stores {
				f := conformance.Faulty(s.Driver())
				nodes, fs = append(nodes, fencesOnly{raiseOnly{f}}), append(fs, f)
			}
			d, err := redlock.NewDriver(nodes, opts)
			if err != nil {
				t.Fatalf("redlock.NewDriver: %v", err)
			}
			return d, fs
		}
		return &conformance.Harness{
			NewDriver: func(t *testing.T) driver.Locker { d, _ := newDriver(t); return d },
			Partitioned: func(t *testing.T) (driver.Locker, func()) {
				d, fs := newDriver(t)
				return d, func() { partitionMajority(fs) }
			},
		}
	})
}

// TestNoFenceRequest: with fencing on, a request whose caller ignores
// fences (Request.NoFence, from dlock.Options.DisableFencing) is served as
// with fencing off: fence 0, no floor proposed to the nodes, no write-back.
func TestNoFenceRequest(t *testing.T) {
	ctx := t.Context()
	c := newMemCluster(3)
	var nodes []driver.Locker
	var counts []*countRaise
	for i := range 3 {
		n := &countRaise{Locker: c.raw(t, i)}
		nodes, counts = append(nodes, n), append(counts, n)
	}
	d, err := redlock.NewDriver(nodes, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r := driver.Request{Key: "k", Token: rand(), TTL: time.Minute, NoFence: true}
	res, err := d.Acquire(ctx, r)
	if err != nil || !res.Acquired || res.Fence != 0 {
		t.Fatalf("Acquire with NoFence = %+v, %v; want granted with fence 0", res, err)
	}
	held := 0
	for i := range 3 { // a majority at least: the last node's answer is not awaited
		h, ok := c.holder(t, i, "k")
		if ok {
			held++
		}
		if h.Fence > 1 {
			t.Errorf("node %d: fence %d; want no floor proposed (fence at most 1)", i, h.Fence)
		}
		if n := counts[i].n.Load(); n != 0 {
			t.Errorf("node %d: %d RaiseFence calls; want none", i, n)
		}
	}
	if held < 2 {
		t.Errorf("%d nodes hold the key; want a majority", held)
	}
	if err := d.Release(ctx, r.Key, r.Token); err != nil {
		t.Fatal(err)
	}
}
