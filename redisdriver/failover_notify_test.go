package redisdriver_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// addReplica starts a Cluster node and makes it a replica of the master at
// masterAddr; it returns once the replica is in sync and every master
// knows it (so they can vote for it in a failover). The test Cluster of
// redistest has no replicas of its own.
func addReplica(t *testing.T, cl *redistest.Cluster, masterAddr string) *redistest.Server {
	t.Helper()
	ctx := testCtx(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bus := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	replica := redistest.StartProcess(t, &redistest.Options{Args: []string{
		"--cluster-enabled", "yes", "--cluster-node-timeout", "1000",
		"--cluster-port", bus, "--cluster-config-file", "nodes-" + bus + ".conf",
	}})
	rc := replica.Client(t)
	var master *redis.Client
	for _, n := range cl.Nodes() {
		if n.Addr() == masterAddr {
			master = n.Client(t)
		}
	}
	// CLUSTER MEET needs the master's bus port, which is not port+10000.
	nodes, err := master.ClusterNodes(ctx).Result()
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
	host, port, _ := net.SplitHostPort(masterAddr)
	if err := rc.Do(ctx, "CLUSTER", "MEET", host, port, masterBus).Err(); err != nil {
		t.Fatal(err)
	}
	masterID, err := master.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	replicaID, err := rc.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	// Cluster gossip announces none of these steps: poll.
	poll(t, "the replica to join", func() error { return rc.Do(ctx, "CLUSTER", "REPLICATE", masterID).Err() })
	poll(t, "the replica to sync", func() error {
		info, err := master.Info(ctx, "replication").Result()
		if err == nil && !(strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online")) {
			err = errNotYet
		}
		return err
	})
	for _, n := range cl.Nodes() {
		c := n.Client(t)
		poll(t, "every master to know the replica", func() error {
			nodes, err := c.ClusterNodes(ctx).Result()
			for _, line := range strings.Split(nodes, "\n") {
				if strings.HasPrefix(line, replicaID) && strings.Contains(line, "slave "+masterID) {
					return err
				}
			}
			return errNotYet
		})
	}
	return replica
}

type notYet struct{}

func (notYet) Error() string { return "not yet" }

var errNotYet error = notYet{}

// poll calls f until it succeeds, failing t after a generous bound.
func poll(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTopologyClusterFailover: the master of a slot with live waiters
// dies and its replica takes over. The waiters are subscribed again on
// the new master and woken once; a release there wakes them all; the dead
// master's connection and reader are dropped (goroutines and pub/sub
// connections return to their baseline).
func TestTopologyClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("a Cluster failover takes seconds")
	}
	verifyNoLeaks(t)
	cl := redistest.StartCluster(t)
	admin := cl.Client(t)
	const key = "failover/notify"
	slot := keySlot(t, admin, key)
	oldAddr, _ := slotOwner(t, admin, slot)
	replica := addReplica(t, cl, oldAddr)

	client := redis.NewClusterClient(cl.Options())
	d := redisdriver.NewDriver(client, nil)
	ws := subscribeN(t, d, key, 3)
	var old *redistest.Server
	for _, n := range cl.Nodes() {
		if n.Addr() == oldAddr {
			old = n
		}
	}
	old.Kill(t)
	start := time.Now()
	// The Cluster (node timeout 5s) takes several seconds to fail over.
	awaitWokenWithin(t, ws, time.Minute, "after their master failed over")
	t.Logf("waiters woken %v after the master was killed", time.Since(start))

	fresh := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{replica.Addr()}})
	df := redisdriver.NewDriver(fresh, nil)
	poll(t, "the new master to take locks", func() error {
		_, err := df.Acquire(testCtx(t), req(key, "releaser"))
		return err
	})
	drain(ws)
	if err := df.Release(testCtx(t), key, "releaser"); err != nil {
		t.Fatal(err)
	}
	awaitWoken(t, ws, "by a release on the new master")
	servers := append([]*redistest.Server{replica}, cl.Nodes()...)
	if n := pubsubConns(t, servers)[replica.Addr()]; n != 1 {
		t.Errorf("%d pub/sub connections on the new master, want 1", n)
	}

	for _, w := range ws {
		w.cancel()
	}
	d.Close()
	df.Close()
	client.Close()
	fresh.Close()
	awaitNoPubsub(t, servers)
}

// TestTopologySentinelFailover: the master dies and Sentinel promotes the
// replica. Live waiters are subscribed again on the new master and woken,
// a release there wakes them, and goroutines and pub/sub connections
// return to their baseline.
func TestTopologySentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("a Sentinel failover takes seconds")
	}
	verifyNoLeaks(t)
	s := redistest.StartSentinel(t)
	const key = "failover/sentinel"
	client := redis.NewFailoverClient(s.FailoverOptions())
	d := redisdriver.NewDriver(client, nil)
	ws := subscribeN(t, d, key, 3)
	s.Master().Kill(t)
	start := time.Now()
	awaitWokenWithin(t, ws, time.Minute, "after their master failed over")
	t.Logf("waiters woken %v after the master was killed", time.Since(start))

	direct := redisdriver.NewDriver(s.Replica().Client(t), nil)
	defer direct.Close()
	poll(t, "the new master to take locks", func() error {
		_, err := direct.Acquire(testCtx(t), req(key, "releaser"))
		return err
	})
	drain(ws)
	if err := direct.Release(testCtx(t), key, "releaser"); err != nil {
		t.Fatal(err)
	}
	awaitWoken(t, ws, "by a release on the new master")
	for _, w := range ws {
		w.cancel()
	}
	d.Close()
	client.Close()
	awaitNoPubsub(t, []*redistest.Server{s.Replica()})
}
