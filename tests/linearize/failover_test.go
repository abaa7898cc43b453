package linearize

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestLinearizableClusterFailover runs the Shared workload on keys of one
// Cluster master while its replica takes over with CLUSTER FAILOVER, with
// waiters queued: Lockers whose slot map predates the failover go on
// subscribing, releasing and handing keys off across it.
func TestLinearizableClusterFailover(t *testing.T) {
	c := redistest.StartCluster(t)
	master := c.Nodes()[0]
	replica := addReplica(t, c, master)
	psubscribeAll(t, append(c.Addrs(), replica.Addr())...)
	b := clusterBackend(t, c.Options())
	slots := slotsOf(t, master)

	w := Shared
	w.Duration = 4 * time.Second
	w.Keys = 6
	var keys []string
	w.KeyNames = func(prefix string) []string {
		keys = keysOn(t, master, slots, prefix, w.Keys)
		return keys
	}
	w.During = func(ctx context.Context) {
		select {
		case <-ctx.Done():
			t.Errorf("the workload ended before the failover")
			return
		case <-time.After(w.Duration / 3):
		}
		// Fail over with waiters in the keys' queues (redisdriver's
		// PREFIX{KEY}:queue).
		mc := redis.NewClient(master.Options())
		defer mc.Close()
		var queued int64
		err := pollUntil(ctx, time.Second, func() error {
			queued = 0
			for _, k := range keys {
				n, err := mc.ZCard(ctx, "dlock:{"+k+"}:queue").Result()
				if err != nil {
					return err
				}
				queued += n
			}
			if queued == 0 {
				return errors.New("no waiter queued")
			}
			return nil
		})
		if err != nil {
			t.Errorf("before the failover: %v", err)
		}
		start := time.Now()
		if err := failover(ctx, replica); err != nil {
			t.Errorf("CLUSTER FAILOVER: %v", err)
			return
		}
		t.Logf("the replica took over in %v, %v into the run, with %d entries in the keys' waiter queues", time.Since(start).Round(time.Millisecond), w.Duration/3, queued)
	}
	Check(t, b, w)
}

// failover makes replica the master of its master's slots with CLUSTER
// FAILOVER and waits until it says it is.
func failover(ctx context.Context, replica *redistest.Server) error {
	rc := redis.NewClient(replica.Options())
	defer rc.Close()
	if err := rc.Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		return err
	}
	return pollUntil(ctx, 15*time.Second, func() error {
		role, err := rc.Do(ctx, "ROLE").Slice()
		if err != nil {
			return err
		}
		if len(role) == 0 || role[0] != "master" {
			return fmt.Errorf("role %v", role)
		}
		return nil
	})
}

// slotRange is a range of hash slots, both ends included.
type slotRange struct{ from, to int64 }

// slotsOf returns the slots that node serves.
func slotsOf(t *testing.T, node *redistest.Server) []slotRange {
	t.Helper()
	c := node.Client(t)
	all, err := c.ClusterSlots(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	var mine []slotRange
	for _, s := range all {
		if len(s.Nodes) > 0 && s.Nodes[0].Addr == node.Addr() {
			mine = append(mine, slotRange{int64(s.Start), int64(s.End)})
		}
	}
	if len(mine) == 0 {
		t.Fatalf("node %s serves no slots: %v", node.Addr(), all)
	}
	return mine
}

// keysOn returns n key names starting with prefix whose redisdriver lock
// keys (dlock:{KEY}) hash to slots.
func keysOn(t *testing.T, node *redistest.Server, slots []slotRange, prefix string, n int) []string {
	c := redis.NewClient(node.Options())
	defer c.Close()
	var keys []string
	for i := 0; len(keys) < n && i < 100*n; i++ {
		k := fmt.Sprintf("%sk%d", prefix, i)
		slot, err := c.ClusterKeySlot(context.Background(), "dlock:{"+k+"}").Result()
		if err != nil {
			t.Errorf("CLUSTER KEYSLOT: %v", err)
			return nil
		}
		for _, r := range slots {
			if r.from <= slot && slot <= r.to {
				keys = append(keys, k)
			}
		}
	}
	if len(keys) < n {
		t.Errorf("found %d keys on %s's slots, want %d", len(keys), node.Addr(), n)
	}
	return keys
}

// addReplica starts a Cluster node and makes it a replica of master; it
// returns once the replica is in sync and every master knows it (so that
// they can vote for it in a failover). The test Cluster of redistest has
// no replicas of its own.
func addReplica(t *testing.T, cl *redistest.Cluster, master *redistest.Server) *redistest.Server {
	t.Helper()
	ctx := t.Context()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bus := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	replica := redistest.StartProcess(t, &redistest.Options{Args: []string{
		"--cluster-enabled", "yes", "--cluster-node-timeout", "5000",
		"--cluster-port", bus, "--cluster-config-file", "nodes-" + bus + ".conf",
	}})
	rc := replica.Client(t)
	mc := master.Client(t)
	// CLUSTER MEET needs the master's bus port, which is not port+10000.
	nodes, err := mc.ClusterNodes(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	var masterBus string
	for _, line := range strings.Split(nodes, "\n") {
		if f := strings.Fields(line); len(f) > 2 && strings.Contains(f[2], "myself") {
			_, masterBus, _ = strings.Cut(f[1], "@")
			masterBus, _, _ = strings.Cut(masterBus, ",")
		}
	}
	host, port, _ := net.SplitHostPort(master.Addr())
	if err := rc.Do(ctx, "CLUSTER", "MEET", host, port, masterBus).Err(); err != nil {
		t.Fatal(err)
	}
	masterID, err := mc.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	replicaID, err := rc.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	// Cluster gossip announces none of these steps: poll.
	wait := func(what string, f func() error) {
		t.Helper()
		if err := pollUntil(ctx, 30*time.Second, f); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	wait("the replica to join", func() error { return rc.Do(ctx, "CLUSTER", "REPLICATE", masterID).Err() })
	wait("the replica to sync", func() error {
		info, err := mc.Info(ctx, "replication").Result()
		if err == nil && !(strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online")) {
			err = errors.New("not in sync")
		}
		return err
	})
	for _, n := range cl.Nodes() {
		c := n.Client(t)
		wait("every master to know the replica", func() error {
			nodes, err := c.ClusterNodes(ctx).Result()
			for _, line := range strings.Split(nodes, "\n") {
				if strings.HasPrefix(line, replicaID) && strings.Contains(line, "slave "+masterID) {
					return err
				}
			}
			return errors.New("replica unknown")
		})
	}
	return replica
}

// pollUntil calls f every 20 ms until it succeeds, or fails after bound.
func pollUntil(ctx context.Context, bound time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
