package redisdriver_test

import (
	"fmt"
	"sync"
	"testing"

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
