package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/conformance"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/dlock-go/dlock/redlock"
	"github.com/redis/go-redis/v9"
)

// redisNodes is N independent redis-server processes.
type redisNodes []*redistest.Server

func startRedis(t testing.TB, n int) redisNodes {
	t.Helper()
	s := make(redisNodes, n)
	for i := range s {
		s[i] = redistest.StartProcess(t, nil)
	}
	return s
}

func (s redisNodes) addrs() []string {
	a := make([]string, len(s))
	for i, srv := range s {
		a[i] = srv.Addr()
	}
	return a
}

// clients returns one client per node, closed when t ends. They do not
// retry commands, as NewRedis requires.
func (s redisNodes) clients(t testing.TB) []redis.UniversalClient {
	cs := make([]redis.UniversalClient, len(s))
	for i, srv := range s {
		o := srv.Options()
		o.MaxRetries = -1
		c := redis.NewClient(o)
		t.Cleanup(func() { c.Close() })
		cs[i] = c
	}
	return cs
}

// driver returns a Redlock driver over new clients of every node; the
// caller closes it.
func (s redisNodes) driver(t testing.TB, opts *redlock.Options) driver.Locker {
	t.Helper()
	return s.driverOver(t, s.clients(t), opts)
}

func (s redisNodes) driverOver(t testing.TB, clients []redis.UniversalClient, opts *redlock.Options) driver.Locker {
	t.Helper()
	nodes := make([]driver.Locker, len(clients))
	for i, c := range clients {
		nodes[i] = redisdriver.NewDriver(c, nil)
	}
	d, err := redlock.NewDriver(nodes, opts)
	if err != nil {
		t.Fatalf("redlock.NewDriver: %v", err)
	}
	return d
}

// proxied returns clients that reach every node through a proxy of its
// own, and the proxies.
func (s redisNodes) proxied(t testing.TB) ([]redis.UniversalClient, []*redistest.Proxy) {
	cs := make([]redis.UniversalClient, len(s))
	ps := make([]*redistest.Proxy, len(s))
	for i, srv := range s {
		ps[i] = redistest.NewProxy(t, srv.Addr())
		o := srv.Options()
		o.Addr = ps[i].Addr()
		o.MaxRetries = -1
		c := redis.NewClient(o)
		t.Cleanup(func() { c.Close() })
		cs[i] = c
	}
	return cs, ps
}

// holds reports whether node i holds key, asking it directly.
func (s redisNodes) holds(t testing.TB, i int, key string) (driver.Holder, bool) {
	t.Helper()
	d := redisdriver.NewDriver(s[i].Client(t), nil)
	defer d.Close()
	h, ok, err := d.(driver.Inspector).Inspect(context.Background(), key)
	if err != nil {
		t.Fatalf("node %d: Inspect: %v", i, err)
	}
	return h, ok
}

func TestConformanceRedis(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("Nodes%d", n), func(t *testing.T) {
			t.Parallel()
			nodes := startRedis(t, n)
			conformance.Run(t, func(t *testing.T) *conformance.Harness {
				return &conformance.Harness{
					NewDriver: func(t *testing.T) driver.Locker { return nodes.driver(t, suiteOptions) },
					Partitioned: func(t *testing.T) (driver.Locker, func()) {
						cs, ps := nodes.proxied(t)
						return nodes.driverOver(t, cs, suiteOptions), func() {
							for _, p := range ps[:n/2+1] {
								p.Partition()
							}
						}
					},
				}
			})
		})
	}
}

// TestRedisNodeRestart restarts one node, empty, between holders and while
// a lease is held: each next fence is still greater than every earlier one,
// and no second client gets the key while it is held.
func TestRedisNodeRestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	nodes := startRedis(t, 3)
	c1, c2 := nodes.clients(t), nodes.clients(t)
	l1 := dlock.New(nodes.driverOver(t, c1, nil), &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 10 * time.Second}})
	defer l1.Close()
	other := nodes.driverOver(t, c2, nil)
	defer other.Close()
	// restart restarts node i and lets the clients drop their
	// connections to the old process: they do not retry commands, so a
	// stale connection would fail the next call to that node, and a lease
	// held on two nodes only is not what this test restarts a node under
	// (losing one of those two is the hazard the package doc's Safety
	// section describes).
	restart := func(i int) {
		nodes[i].Restart(t)
		for _, c := range []redis.UniversalClient{c1[i], c2[i]} {
			for try := 0; c.Ping(ctx).Err() != nil; try++ {
				if try == 100 {
					t.Fatalf("node %d unreachable after its restart", i)
				}
			}
		}
	}
	const key = "restart"
	var last uint64
	for round := range 6 {
		lease, err := l1.TryAcquire(ctx, key, nil)
		if err != nil {
			t.Fatalf("round %d: TryAcquire = %v", round, err)
		}
		if lease.Fence() <= last {
			t.Errorf("round %d: fence %d after %d: fences must increase across a node's empty restart", round, lease.Fence(), last)
		}
		last = lease.Fence()
		if round%2 == 1 {
			// Restart a node while the lease is held: the other two
			// still hold it, so it stays exclusive.
			restart((round + 1) % 3)
		}
		res, err := other.Acquire(ctx, driver.Request{Key: key, Token: fmt.Sprint("other", round), TTL: time.Minute})
		if err != nil || res.Acquired {
			t.Fatalf("round %d: another client's Acquire of the held key = %+v, %v; want busy", round, res, err)
		}
		if h, ok, err := other.(driver.Inspector).Inspect(ctx, key); err != nil || !ok || h.Fence != lease.Fence() {
			t.Errorf("round %d: Inspect = %+v, %v, %v; want the lease's fence %d", round, h, ok, err, lease.Fence())
		}
		if err := lease.Release(ctx); err != nil {
			t.Fatalf("round %d: Release = %v", round, err)
		}
		if round%2 == 0 {
			restart(round % 3) // between holders
		}
	}
}

// TestRedisLeaseThroughNodeLoss: a holder keeps its lease, refreshed by
// dlock, through the loss of one node of three (its proxy partitioned), and
// loses it when a second is cut off, while the nodes still hold the key.
func TestRedisLeaseThroughNodeLoss(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	nodes := startRedis(t, 3)
	cs, ps := nodes.proxied(t)
	// A large drift leaves room to look at the nodes when the lease is
	// lost, before they expire the key, on a loaded machine.
	const ttl, drift = 1500 * time.Millisecond, 400 * time.Millisecond
	l := dlock.New(nodes.driverOver(t, cs, &redlock.Options{NodeTimeout: 300 * time.Millisecond}), &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: ttl, Drift: drift}})
	defer l.Close()
	const key = "node-loss"
	lease, err := l.Acquire(ctx, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	ps[0].Partition()
	select {
	case <-lease.Context().Done():
		t.Fatalf("lease lost with 2 of 3 nodes reachable: %v", lease.Err())
	case <-time.After(2 * ttl):
	}
	ps[1].Partition()
	cut := time.Now()
	select {
	case <-lease.Context().Done():
	case <-time.After(2 * ttl):
		t.Fatalf("lease not lost %v after a majority was cut off", 2*ttl)
	}
	lost := time.Since(cut)
	if !errors.Is(lease.Err(), dlock.ErrLeaseLost) {
		t.Errorf("lease.Err() = %v; want ErrLeaseLost", lease.Err())
	}
	for _, i := range []int{1, 2} {
		if h, held := nodes.holds(t, i, key); !held || h.Fence > lease.Fence() {
			t.Errorf("node %d: holder %+v, %v when the lease was lost %v after the cut; the nodes must still hold it then", i, h, held, lost)
		}
	}
}

func TestNewRedisRejects(t *testing.T) {
	ok := func(addr string) redis.UniversalClient {
		c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b := ok("127.0.0.1:1"), ok("127.0.0.1:2")
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:4", "127.0.0.1:5"}})
	t.Cleanup(func() { cluster.Close() })
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:6", "b": "127.0.0.1:7"}})
	t.Cleanup(func() { ring.Close() })
	noCtx := redis.NewClient(&redis.Options{Addr: "127.0.0.1:8", MaxRetries: -1})
	t.Cleanup(func() { noCtx.Close() })
	retries := redis.NewClient(&redis.Options{Addr: "127.0.0.1:11", ContextTimeoutEnabled: true}) // go-redis's default: 3 retries
	t.Cleanup(func() { retries.Close() })
	for _, tc := range []struct {
		name    string
		clients []redis.UniversalClient
		want    string
	}{
		{"TwoNodes", []redis.UniversalClient{a, b}, "at least 3"},
		{"Cluster", []redis.UniversalClient{a, b, cluster}, "node 2 is a Cluster client"},
		{"UniversalWithSeveralAddrs", []redis.UniversalClient{a, b, redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:9", "127.0.0.1:10"}})}, "Cluster client"},
		{"Ring", []redis.UniversalClient{ring, a, b}, "node 0 is a Ring"},
		{"SameClient", []redis.UniversalClient{a, b, a}, "same Redis server"},
		{"SameAddress", []redis.UniversalClient{a, b, ok("localhost:1")}, "nodes 0 (127.0.0.1:1) and 2 (localhost:1) are the same"},
		{"NoContextTimeout", []redis.UniversalClient{a, b, noCtx}, "ContextTimeoutEnabled"},
		{"Retries", []redis.UniversalClient{a, b, retries}, "node 2 (127.0.0.1:11) retries commands (MaxRetries 3)"},
		{"Nil", []redis.UniversalClient{a, nil, b}, "node 1 is a nil client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range tc.clients {
				if u, ok := c.(*redis.ClusterClient); ok && u != cluster {
					t.Cleanup(func() { u.Close() })
				}
			}
			l, err := redlock.NewRedis(tc.clients, nil)
			if !errors.Is(err, dlock.ErrInvalid) || !strings.Contains(fmt.Sprint(err), tc.want) {
				t.Errorf("NewRedis = %v, %v; want an error wrapping ErrInvalid that says %q", l, err, tc.want)
			}
		})
	}
}

func TestNewRedis(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	nodes := startRedis(t, 3)
	clients := nodes.clients(t)
	l, err := redlock.NewRedis(clients, &redlock.Options{
		Redis: &redisdriver.Options{Prefix: "app:"},
		Lock:  &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 5 * time.Second, Owner: "me"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := l.TryAcquire(ctx, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if h, ok, err := soleHolder(l.Holders(ctx, "k")); err != nil || !ok || h.Owner != "me" || h.Fence != lease.Fence() || h.TTL > 5*time.Second {
		t.Errorf("Holder = %+v, %v, %v; want owner me, the lease's fence, TTL ≤ 5s", h, ok, err)
	}
	for i, c := range clients {
		// A node that answered after the majority may take a moment.
		n, err := c.Exists(ctx, "app:{k}").Result()
		for deadline := time.Now().Add(2 * time.Second); err == nil && n == 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
			n, err = c.Exists(ctx, "app:{k}").Result()
		}
		if err != nil || n != 1 {
			t.Errorf("node %d: app:{k} exists = %d, %v; want the lock under the prefix", i, n, err)
		}
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		if err := c.Ping(ctx).Err(); err != nil {
			t.Errorf("node %d: client unusable after the Locker's Close: %v; NewRedis must not close the caller's clients", i, err)
		}
	}
}

func TestOpenURL(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	nodes := startRedis(t, 3)
	hosts := strings.Join(nodes.addrs(), ",")
	l, err := dlock.Open(ctx, "redlock://"+hosts+"/2?node_timeout=200ms&prefix=url:&fencing=false&ttl=5s&dial_timeout=1s", nil)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := l.TryAcquire(ctx, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if lease.Fence() != 0 {
		t.Errorf("fence %d with fencing=false; want 0", lease.Fence())
	}
	c := redis.NewClient(&redis.Options{Addr: nodes[1].Addr(), DB: 2})
	defer c.Close()
	if ttl, err := c.PTTL(ctx, "url:{k}").Result(); err != nil || ttl <= 0 || ttl > 5*time.Second {
		t.Errorf("PTTL url:{k} in db 2 = %v, %v; want the lock there, TTL ≤ 5s", ttl, err)
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenURLTLS(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var hosts []string
	for range 3 {
		hosts = append(hosts, redistest.StartTLS(t).Addr())
	}
	u := fmt.Sprintf("redlocks://%s:%s@%s/0?skip_verify=true", redistest.FullUser.Username, redistest.FullUser.Password, strings.Join(hosts, ","))
	l, err := dlock.Open(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lease, err := l.TryAcquire(ctx, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if lease.Fence() == 0 {
		t.Errorf("fence 0 with fencing on")
	}
	lease.Release(ctx)

	// A wrong password fails at Open, and is not shown.
	bad := strings.Replace(u, redistest.FullUser.Password, "wrong-secret-pw", 1)
	if l, err := dlock.Open(ctx, bad, nil); err == nil {
		l.Close()
		t.Errorf("Open with a wrong password succeeded")
	} else if strings.Contains(err.Error(), "wrong-secret-pw") {
		t.Errorf("Open error shows the password: %v", err)
	}
}

func TestOpenURLErrors(t *testing.T) {
	ctx := t.Context()
	closed := freeAddrs(t, 3)
	hosts := strings.Join(closed, ",")
	for _, tc := range []struct {
		name, url, want string
		is              error
	}{
		{"UnknownParam", "redlock://u:topsecret@" + hosts + "/0?bogus=1", "bogus", dlock.ErrInvalid},
		{"PasswordParam", "redlock://" + hosts + "?password=topsecret", "password", dlock.ErrInvalid},
		{"BadFencing", "redlock://u:topsecret@" + hosts + "?fencing=maybe", "fencing", dlock.ErrInvalid},
		// fencing takes what every boolean parameter of the Redis URLs
		// takes (true, false, 1, 0), not strconv.ParseBool's spellings.
		{"FencingCapitalized", "redlock://" + hosts + "?fencing=False", `fencing="False" in`, dlock.ErrInvalid},
		{"BadNodeTimeout", "redlock://" + hosts + "?node_timeout=-1s", "node_timeout", dlock.ErrInvalid},
		{"BadClientParam", "redlock://u:topsecret@" + hosts + "?pool_size=many", "pool_size", dlock.ErrInvalid},
		{"TwoHosts", "redlock://u:topsecret@" + strings.Join(closed[:2], ","), "at least 3", dlock.ErrInvalid},
		{"Duplicate", "redlock://u:topsecret@" + hosts + "," + closed[0], "same Redis server", dlock.ErrInvalid},
		{"EmptyHost", "redlock://" + closed[0] + ",," + closed[1], "empty host", dlock.ErrInvalid},
		{"BadDB", "redlock://" + hosts + "/x", "", dlock.ErrInvalid},
		{"Unreachable", "redlock://u:topsecret@" + hosts + "/0?node_timeout=100ms", "quorum not reached", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := dlock.Open(ctx, tc.url, nil)
			if err == nil {
				l.Close()
				t.Fatalf("Open(%q) succeeded", tc.url)
			}
			if tc.is == nil && !errors.As(err, new(*redlock.QuorumError)) {
				t.Errorf("Open = %v; want a *QuorumError", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open = %v; want an error wrapping %v that says %q", err, tc.is, tc.want)
			}
			if strings.Contains(err.Error(), "topsecret") {
				t.Errorf("Open error shows the password: %v", err)
			}
		})
	}
}

// freeAddrs returns loopback addresses where nothing listens.
func freeAddrs(t *testing.T, n int) []string {
	var addrs []string
	// Every listener stays open until all n are taken: a port closed at
	// once may be handed out again to the next Listen, and two equal
	// addresses make a different error ("the same Redis server").
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

func BenchmarkAcquireRelease(b *testing.B) {
	for _, n := range []int{3, 5} {
		nodes := startRedis(b, n)
		for _, fencing := range []bool{true, false} {
			name := fmt.Sprintf("Nodes%d/Fencing", n)
			if !fencing {
				name = fmt.Sprintf("Nodes%d/NoFencing", n)
			}
			b.Run(name, func(b *testing.B) {
				l, err := redlock.NewRedis(nodes.clients(b), &redlock.Options{DisableFencing: !fencing})
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				ctx := context.Background()
				key := "bench-" + name
				b.ReportAllocs()
				for b.Loop() {
					lease, err := l.TryAcquire(ctx, key, nil)
					if err != nil {
						b.Fatal(err)
					}
					if err := lease.Release(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestRedisOneRound: on real nodes, whose clocks differ if only by the
// microseconds between their calls, every node grants
// the fence the client proposes, so an uncontended acquire is one round
// (no RaiseFence); without fencing the nodes keep no fence at all.
func TestRedisOneRound(t *testing.T) {
	nodes := startRedis(t, 3)
	ctx := t.Context()
	var counted []driver.Locker
	var counts []*countRaise
	for _, c := range nodes.clients(t) {
		n := &countRaise{Locker: redisdriver.NewDriver(c, nil)}
		counted, counts = append(counted, n), append(counts, n)
	}
	d, err := redlock.NewDriver(counted, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var last uint64
	for i := range 20 {
		r := driver.Request{Key: "one-round", Token: rand(), TTL: time.Minute}
		res, err := d.Acquire(ctx, r)
		if err != nil || !res.Acquired || res.Fence <= last {
			t.Fatalf("Acquire %d = %+v, %v; want a fence above %d", i, res, err, last)
		}
		last = res.Fence
		if err := d.Release(ctx, r.Key, r.Token); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range counts {
		if n := c.n.Load(); n != 0 {
			t.Errorf("node %d: %d RaiseFence calls; want none", i, n)
		}
	}

	bare := nodes.driver(t, &redlock.Options{DisableFencing: true})
	defer bare.Close()
	r := driver.Request{Key: "bare", Token: rand(), TTL: time.Minute}
	if res, err := bare.Acquire(ctx, r); err != nil || !res.Acquired || res.Fence != 0 {
		t.Fatalf("Acquire without fencing = %+v, %v; want fence 0", res, err)
	}
	for i := range nodes {
		if n := nodes[i].Client(t).Exists(ctx, "dlock:{bare}:fence").Val(); n != 0 {
			t.Errorf("node %d keeps a fence key without fencing", i)
		}
	}
}
