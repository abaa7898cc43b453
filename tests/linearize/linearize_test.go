package linearize

import (
	"context"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/memdriver"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/dlock-go/dlock/redlock"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }

// TestLinearizable runs every workload on every backend: each history must
// be one of a lock per key with fences, and no key may be left held. A
// client on PSUBSCRIBE * is connected to the servers of every Redis
// backend but RedisLatency.
func TestLinearizable(t *testing.T) {
	backends := []struct {
		name string
		make func(t *testing.T) Backend
	}{
		{"Memdriver", memBackend},
		{"Redis", func(t *testing.T) Backend {
			srv := redistest.Start(t)
			psubscribeAll(t, srv.Addr())
			return redisBackend(t, srv, srv.Addr())
		}},
		// Without a pattern subscriber, so that what fails here is not
		// what PSUBSCRIBE * breaks.
		{"RedisLatency", func(t *testing.T) Backend {
			srv := redistest.Start(t)
			px := redistest.NewProxy(t, srv.Addr())
			px.Latency(2 * time.Millisecond)
			return redisBackend(t, srv, px.Addr())
		}},
		{"Cluster", func(t *testing.T) Backend {
			c := redistest.StartCluster(t)
			psubscribeAll(t, c.Addrs()...)
			return clusterBackend(t, c.Options())
		}},
		{"Redlock", func(t *testing.T) Backend {
			return redlockBackend(t, 0)
		}},
		{"RedlockLatency", func(t *testing.T) Backend {
			return redlockBackend(t, 2*time.Millisecond)
		}},
	}
	workloads := []struct {
		name string
		w    Workload
	}{
		{"Owned", Owned},
		{"Shared", Shared},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			backend := b.make(t)
			for _, w := range workloads {
				t.Run(w.name, func(t *testing.T) { Check(t, backend, w.w) })
			}
		})
	}
}

// memBackend is one in-process store.
func memBackend(t *testing.T) Backend {
	s := memdriver.NewStore()
	probe := s.Driver()
	t.Cleanup(func() { probe.Close() })
	return Backend{
		NewDriver: func(*testing.T) driver.Locker { return s.Driver() },
		Held:      HeldOn(probe.(driver.Inspector)),
	}
}

// redisBackend is a standalone server, reached by its clients at addr (the
// server's or a proxy's).
func redisBackend(t *testing.T, srv *redistest.Server, addr string) Backend {
	probe := redisdriver.NewDriver(srv.Client(t), nil)
	t.Cleanup(func() { probe.Close() })
	return Backend{
		NewDriver: func(t *testing.T) driver.Locker { return redisdriver.NewDriver(client(t, srv, addr), nil) },
		Held:      HeldOn(probe.(driver.Inspector)),
	}
}

// clusterBackend is a Cluster; its probe's client is made when it runs,
// so that it sees the slot map of then.
func clusterBackend(t *testing.T, opts *redis.ClusterOptions) Backend {
	return Backend{
		NewDriver: func(t *testing.T) driver.Locker {
			c := redis.NewClusterClient(opts)
			t.Cleanup(func() { c.Close() })
			return redisdriver.NewDriver(c, nil)
		},
		Held: func(ctx context.Context, keys []string) ([]Leftover, error) {
			c := redis.NewClusterClient(opts)
			defer c.Close()
			probe := redisdriver.NewDriver(c, nil)
			defer probe.Close()
			return HeldOn(probe.(driver.Inspector))(ctx, keys)
		},
	}
}

// redlockBackend is Redlock over three servers, each behind a proxy that
// adds latency if it is not zero, with a PSUBSCRIBE * client on each. The
// run records every node's calls (see Backend.NewQuorum).
func redlockBackend(t *testing.T, latency time.Duration) Backend {
	var srvs []*redistest.Server
	var addrs []string
	var probes []driver.Inspector
	for range 3 {
		s := redistest.Start(t)
		psubscribeAll(t, s.Addr())
		addr := s.Addr()
		if latency > 0 {
			px := redistest.NewProxy(t, s.Addr())
			px.Latency(latency)
			addr = px.Addr()
		}
		srvs = append(srvs, s)
		addrs = append(addrs, addr)
		probe := redisdriver.NewDriver(s.Client(t), nil)
		t.Cleanup(func() { probe.Close() })
		probes = append(probes, probe.(driver.Inspector))
	}
	return Backend{
		NewQuorum: func(t *testing.T, node func(int, driver.Locker) driver.Locker) driver.Locker {
			nodes := make([]driver.Locker, len(srvs))
			for i, s := range srvs {
				nodes[i] = node(i, redisdriver.NewDriver(client(t, s, addrs[i]), nil))
			}
			d, err := redlock.NewDriver(nodes, nil)
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
		Held: HeldOn(probes...),
	}
}

// client returns a client of srv that connects to addr (a proxy of it),
// closed when t ends.
func client(t *testing.T, srv *redistest.Server, addr string) *redis.Client {
	o := srv.Options()
	o.Addr = addr
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

// psubscribeAll connects a client on PSUBSCRIBE * to each of addrs, as a
// monitoring tool (redis-cli, RedisInsight) would: PUBLISH counts it as a
// receiver of every message, so a driver must not take that count as
// proof that a waiter heard its grant.
func psubscribeAll(t *testing.T, addrs ...string) {
	t.Helper()
	for _, addr := range addrs {
		c := redis.NewClient(&redis.Options{Addr: addr})
		ps := c.PSubscribe(t.Context(), "*")
		if _, err := ps.Receive(t.Context()); err != nil {
			t.Fatalf("PSUBSCRIBE * on %s: %v", addr, err)
		}
		ch := ps.Channel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range ch {
			}
		}()
		t.Cleanup(func() {
			ps.Close()
			c.Close()
			<-done
		})
	}
}
