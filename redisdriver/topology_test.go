package redisdriver_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// TestReplicaAcksFollowsSlotMove: with ReplicaAcks on Cluster the acquire
// runs on the key's master through a node client, which follows no
// redirect. After the key's slot moved to another master (CLUSTER SETSLOT
// … NODE), the acquire must reach the new owner, not fail with MOVED until
// something else refreshes the slot map. (The test Cluster has no
// replicas, so the acquire then fails for want of acknowledgements, after
// running on the new owner: its fence key is there.)
func TestReplicaAcksFollowsSlotMove(t *testing.T) {
	cl := redistest.StartCluster(t)
	ctx := testCtx(t)
	const key = "moved/k"
	lk := "dlock:{" + key + "}"
	d := redisdriver.NewDriver(cl.Client(t), &redisdriver.Options{ReplicaAcks: 1, ReplicaTimeout: 20 * time.Millisecond})
	defer d.Close()
	// Load the slot map: the attempt fails for want of replicas.
	if _, err := d.Acquire(ctx, req(key, "t")); !errors.Is(err, dlock.ErrUnavailable) && !driver.OutcomeUnknown(err) {
		t.Fatalf("first acquire: %v, want ErrUnavailable (no replicas), or an unknown outcome if its undo failed", err)
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
	// Move the slot, emptied first, to the next master: the fence key,
	// and the lock key too in case the first acquire's undo has not
	// reached the server yet (SETSLOT refused a slot still holding keys).
	if err := nodes[src].Del(ctx, lk, lk+":fence").Err(); err != nil {
		t.Fatal(err)
	}
	dst := (src + 1) % 3
	for _, i := range []int{dst, src, (src + 2) % 3} {
		if err := nodes[i].Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", ids[dst]).Err(); err != nil {
			t.Fatalf("CLUSTER SETSLOT on node %d: %v", i, err)
		}
	}

	_, err = d.Acquire(ctx, req(key, "t"))
	t.Logf("acquire after the slot move: %v", err)
	if err == nil || strings.Contains(err.Error(), "MOVED") || !errors.Is(err, dlock.ErrUnavailable) {
		t.Errorf("acquire after the slot move: %v, want it run on the new owner (ErrUnavailable for want of replicas)", err)
	}
	if nodes[dst].Exists(ctx, lk+":fence").Val() != 1 {
		t.Errorf("the acquire after the slot move did not run on the new owner (no fence key there): %v", err)
	}
	if n := nodes[dst].Exists(ctx, lk).Val(); n != 0 {
		t.Errorf("lock left on the new owner after an acquire that failed")
	}
}

// serverPID returns the process id of the server c talks to.
func serverPID(t *testing.T, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(testCtx(t), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			pid, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
	}
	t.Fatal("no process_id in INFO server")
	return 0
}

// TestReplicaAcksTimeoutLeavesNoLock: the replica is paused (SIGSTOP), so
// WAIT blocks; the caller's context ends first and the pipeline's read
// times out. The script had granted the lock, which nobody gets: the
// driver must release it, promptly, not leave it held for the TTL.
func TestReplicaAcksTimeoutLeavesNoLock(t *testing.T) {
	s := redistest.StartSentinel(t)
	replica := s.Replica().Client(t)
	pid := serverPID(t, replica)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) }) // before the servers stop
	master := s.Master().Client(t)
	d := redisdriver.NewDriver(s.Master().Client(t), &redisdriver.Options{ReplicaAcks: 1, ReplicaTimeout: 10 * time.Second})
	defer d.Close()

	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := d.Acquire(ctx, driver.Request{Key: "paused/k", Token: "t", TTL: time.Minute, Owner: "test"})
	took := time.Since(start)
	t.Logf("acquire with a paused replica: %+v %v after %v", res, err, took)
	if err == nil {
		t.Fatalf("acquire succeeded without the replica's acknowledgement: %+v", res)
	}
	if took > 3*time.Second {
		t.Errorf("acquire with a 200ms context returned after %v", took)
	}
	if v, err := master.Get(testCtx(t), "dlock:{paused/k}").Result(); err != redis.Nil {
		t.Errorf("lock left held on the master after a failed acquire: %q %v", v, err)
	}
}

// TestRedirectWithoutClusterClient: a plain client pointed at a Cluster
// node gets MOVED for keys of other nodes. That is not a slot moving but a
// configuration mistake: reported at once with advice, not retried as
// unavailable until the caller's context ends.
func TestRedirectWithoutClusterClient(t *testing.T) {
	cl := redistest.SharedCluster(t)
	ctx := testCtx(t)
	var moved error
	for _, n := range cl.Nodes() {
		d := redisdriver.NewDriver(n.Client(t), nil)
		defer d.Close()
		for i := range 20 { // some key lives elsewhere
			if _, err := d.Acquire(ctx, req("redirect/"+strconv.Itoa(i), "t")); err != nil {
				moved = err
				break
			}
			d.Release(ctx, "redirect/"+strconv.Itoa(i), "t")
		}
		if moved != nil {
			break
		}
	}
	if moved == nil {
		t.Fatal("no MOVED from any node")
	}
	if errors.Is(moved, dlock.ErrUnavailable) || !strings.Contains(moved.Error(), "Cluster client") {
		t.Errorf("MOVED to a plain client: %v; want a configuration error, not ErrUnavailable", moved)
	}
}
