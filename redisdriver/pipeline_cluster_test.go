package redisdriver_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// TestPipelineClusterSlotMoved: after a key's slot moved to another
// master behind the client's back (its slot map is stale), concurrent
// calls batched for the old master, the moved key's among them, follow
// the MOVED reply: every acquire succeeds once, and the moved key's lock
// is on its new master.
func TestPipelineClusterSlotMoved(t *testing.T) {
	cl := redistest.StartCluster(t)
	ctx := testCtx(t)
	base := uniqueKey("pipe/moved/")
	key := base + "/k"
	lk := "dlock:{" + key + "}"
	d := redisdriver.NewDriver(cl.Client(t), nil)
	t.Cleanup(func() { d.Close() })
	// Load the slot map and the scripts.
	if _, err := d.Acquire(ctx, req(key, "warm")); err != nil {
		t.Fatal(err)
	}
	if err := d.Release(ctx, key, "warm"); err != nil {
		t.Fatal(err)
	}
	nodes := make([]*redis.Client, 3)
	ids := make([]string, 3)
	src := -1
	for i, n := range cl.Nodes() {
		nodes[i] = n.Client(t)
		id, err := nodes[i].Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
		if nodes[i].Exists(ctx, lk+":fence").Val() == 1 {
			src = i
		}
	}
	if src < 0 {
		t.Fatal("no node has the fence key after the first acquire")
	}
	slot, err := nodes[src].ClusterKeySlot(ctx, lk).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes[src].Del(ctx, lk+":fence").Err(); err != nil {
		t.Fatal(err)
	}
	dst := (src + 1) % 3
	for _, i := range []int{dst, src, (src + 2) % 3} {
		if err := nodes[i].Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", ids[dst]).Err(); err != nil {
			t.Fatalf("CLUSTER SETSLOT on node %d: %v", i, err)
		}
	}

	const n = 32
	keys := make([]string, n)
	keys[0] = key
	for i := 1; i < n; i++ {
		keys[i] = fmt.Sprintf("%s/other/%d", base, i)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() {
			res, err := d.Acquire(ctx, req(k, "t"))
			if err == nil && !res.Acquired {
				err = fmt.Errorf("not acquired: %+v", res)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("acquire %s while its slot map is stale: %v", keys[i], err)
		}
	}
	if nodes[dst].Exists(ctx, lk).Val() != 1 {
		t.Errorf("the moved key's lock is not on its new master")
	}
	for i, k := range keys {
		if err := d.Release(ctx, k, "t"); err != nil {
			t.Errorf("release %d %s: %v", i, k, err)
		}
	}
}

// TestPipelineClusterPerNode: on a Cluster each master has a batcher of
// its own. Calls on keys of one master queue behind that master's calls
// in flight and leave together, while the calls on the other masters go
// on: a master whose round trips are held back holds back no other's.
func TestPipelineClusterPerNode(t *testing.T) {
	cl := redistest.SharedCluster(t)
	c := cl.Client(t)
	rt := &roundTrips{}
	c.AddHook(rt)
	d := redisdriver.NewDriver(c, nil)
	t.Cleanup(func() { d.Close() })
	queued := make(chan struct{}, 1024)
	redisdriver.SetQueuedHookForTest(d, func() { queued <- struct{}{} })
	ctx := testCtx(t)
	base := uniqueKey("pipe/cluster/")
	nodeOf := func(key string) string {
		t.Helper()
		n, err := c.MasterForKey(ctx, "dlock:{"+key+"}")
		if err != nil {
			t.Fatal(err)
		}
		return n.Options().Addr
	}
	// keys returns n keys under prefix whose locks are (on, true) or are
	// not (on, false) on master addr.
	keys := func(prefix, addr string, on bool, n int) []string {
		var ks []string
		for i := 0; len(ks) < n; i++ {
			k := fmt.Sprintf("%s/%d", prefix, i)
			if (nodeOf(k) == addr) == on {
				ks = append(ks, k)
			}
		}
		return ks
	}
	slowNode := nodeOf(base + "/slow")
	// Load the scripts on every master, so that no EVALSHA of the test
	// meets NOSCRIPT.
	for _, k := range append(keys(base+"/warm", slowNode, true, 1), keys(base+"/warm", slowNode, false, 4)...) {
		if _, err := d.Acquire(ctx, req(k, "w")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.(driver.Inspector).Inspect(ctx, k); err != nil {
			t.Fatal(err)
		}
	}

	held, release := rt.holdAll(base + "/slow")
	t.Cleanup(release)
	for _, k := range keys(base+"/slow/gate", slowNode, true, redisdriver.MaxInFlightForTest) {
		go d.(driver.Inspector).Inspect(ctx, k)
		<-held // one round trip each (see occupy)
	}
	before := rt.count()
	const n = 4
	var slow sync.WaitGroup
	slowErrs := make(chan error, n)
	for _, k := range keys(base+"/slow/q", slowNode, true, n) {
		slow.Go(func() {
			res, err := d.Acquire(ctx, req(k, "t"))
			if err == nil && !res.Acquired {
				err = fmt.Errorf("%s not acquired: %+v", k, res)
			}
			slowErrs <- err
		})
	}
	waitQueued(t, queued, n)

	// The other masters answer while the slow one is held back.
	var fast sync.WaitGroup
	for _, k := range keys(base+"/fast", slowNode, false, 3*redisdriver.MaxInFlightForTest) {
		fast.Go(func() {
			res, err := d.Acquire(ctx, req(k, "t"))
			if err != nil || !res.Acquired {
				t.Errorf("acquire of %s on another master while one is held back: %v %+v", k, err, res)
			}
		})
	}
	fast.Wait()

	release()
	slow.Wait()
	close(slowErrs)
	for err := range slowErrs {
		if err != nil {
			t.Error(err)
		}
	}
	var batches [][]string
	for _, trip := range rt.since(before) {
		if strings.Contains(strings.Join(trip, " "), base+"/slow/q") {
			batches = append(batches, trip)
		}
	}
	if len(batches) != 1 || len(batches[0]) != n {
		t.Fatalf("the %d calls queued on the held master went out as %v, want one pipeline of %d", n, batches, n)
	}
}
