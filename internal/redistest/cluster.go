package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of three masters without replicas, made with
// redis-cli --cluster create.
type Cluster struct {
	nodes []*Server
}

// StartCluster starts a three-master Cluster and waits until every node
// reports cluster_state:ok. It stops when t ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := startCluster(t, t.TempDir())
	if err != nil {
		fail(t, err)
	}
	return c
}

// Addrs returns the masters' addresses.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Nodes returns the masters.
func (c *Cluster) Nodes() []*Server { return c.nodes }

// Options returns go-redis Cluster client options with short timeouts.
func (c *Cluster) Options() *redis.ClusterOptions {
	return &redis.ClusterOptions{
		Addrs:                 c.Addrs(),
		DialTimeout:           2 * time.Second,
		ReadTimeout:           2 * time.Second,
		WriteTimeout:          2 * time.Second,
		ContextTimeoutEnabled: true,
	}
}

// Client returns a new Cluster client, closed when t ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cl := redis.NewClusterClient(c.Options())
	t.Cleanup(func() { cl.Close() })
	return cl
}

func startCluster(c cleaner, dir string) (*Cluster, error) {
	cli, err := cliBinary()
	if err != nil {
		return nil, err
	}
	opts := &Options{
		Args: []string{"--cluster-enabled", "yes", "--cluster-node-timeout", "5000"},
		perAttempt: func() ([]string, error) {
			bus, err := freePort()
			if err != nil {
				return nil, err
			}
			b := strconv.Itoa(bus)
			return []string{"--cluster-port", b, "--cluster-config-file", "nodes-" + b + ".conf"}, nil
		},
	}
	cl := &Cluster{nodes: make([]*Server, 3)}
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range cl.nodes {
		wg.Go(func() { cl.nodes[i], errs[i] = startProcess(c, dir, opts) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	args := append([]string{"--cluster", "create"}, cl.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("redistest: %s --cluster create: %w\n%s", filepath.Base(cli), err, out)
	}
	if err := cl.waitOK(ctx); err != nil {
		return nil, err
	}
	return cl, nil
}

// waitOK polls CLUSTER INFO on every node until each reports the cluster
// healthy and all slots assigned; nodes learn this by gossip, with no event
// to wait for.
func (c *Cluster) waitOK(ctx context.Context) error {
	for _, n := range c.nodes {
		cl := redis.NewClient(n.Options())
		err := poll(ctx, func() error {
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") ||
				!strings.Contains(info, "cluster_known_nodes:3") {
				return fmt.Errorf("not ready: %s", strings.ReplaceAll(strings.TrimSpace(info), "\r\n", " "))
			}
			return nil
		})
		cl.Close()
		if err != nil {
			return fmt.Errorf("redistest: cluster node %s: %w", n.Addr(), err)
		}
	}
	return nil
}

// poll calls f with short sleeps until it succeeds or ctx ends.
func poll(ctx context.Context, f func() error) error {
	delay := 5 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}
