package redlock

import (
	"fmt"
	"net"
	"strings"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// NewRedis returns a [dlock.Locker] that holds locks on a majority of the
// Redis servers that clients connect to: one client per independent master
// (a standalone server, or a master watched by its own Sentinels). Each
// node is a redisdriver driver made with opts.Redis; opts.Lock sets the
// Locker's lease defaults. opts may be nil for the defaults.
//
// It refuses, with an error wrapping dlock.ErrInvalid: fewer than
// [MinNodes] clients; a Cluster client or a Ring, which spread keys over
// several servers and are one lock service, not N; two clients of the same
// address (in any database), which are one node counted twice; a
// *redis.Client without ContextTimeoutEnabled, whose calls would ignore
// the per-node timeout and stall a round on a dead node for the client's
// read timeout; and a *redis.Client that retries commands (go-redis's
// default MaxRetries, 3; set MaxRetries: -1): an acquire that ran, then a
// reset connection and a refused re-dial, would be reported as surely not
// applied, and its undo skipped, leaving the lock on that node for a TTL.
// redlock:// URLs make clients that do not retry.
//
// Closing the Locker does not close the clients, which stay the caller's;
// it waits for a call blocked in a read on a hung node until the client's
// ReadTimeout (an acquire listens for its answer for up to the validity
// window, nearly a TTL, with no ReadTimeout): see the Locker's Close.
func NewRedis(clients []redis.UniversalClient, opts *Options) (*dlock.Locker, error) {
	l, err := newRedis(clients, opts)
	if err != nil {
		return nil, err
	}
	var lock *dlock.Options
	if opts != nil {
		lock = opts.Lock
	}
	return dlock.New(l, lock), nil
}

func newRedis(clients []redis.UniversalClient, opts *Options) (*locker, error) {
	var ro *redisdriver.Options
	if opts != nil {
		ro = opts.Redis
	}
	addrs := make([]string, len(clients))
	canon := make([]string, len(clients))
	nodes := make([]driver.Locker, len(clients))
	for i, c := range clients {
		addr, err := clientAddr(i, c)
		if err != nil {
			return nil, err
		}
		addrs[i] = addr
		if addr != "" {
			canon[i] = canonicalAddr(addr)
		}
		for j := range i {
			if same(clients[j], c) || canon[i] != "" && canon[i] == canon[j] {
				return nil, fmt.Errorf("%w: redlock: nodes %d (%s) and %d (%s) are the same Redis server; a quorum needs independent nodes",
					driver.ErrInvalid, j, addrs[j], i, addr)
			}
		}
	}
	if len(clients) < MinNodes {
		return nil, fmt.Errorf("%w: redlock: a quorum needs at least %d independent servers, got %d", driver.ErrInvalid, MinNodes, len(clients))
	}
	for i, c := range clients {
		nodes[i] = redisdriver.NewDriver(c, ro)
	}
	l, err := newLocker(nodes, addrs, opts)
	if err != nil {
		for _, n := range nodes {
			n.Close()
		}
	}
	return l, err
}

// clientAddr checks that c is a client of one server and returns its
// address, or "" when it cannot tell (a Sentinel-managed master, a client
// type it does not know).
func clientAddr(i int, c redis.UniversalClient) (string, error) {
	switch c := c.(type) {
	case nil:
		return "", fmt.Errorf("%w: redlock: node %d is a nil client", driver.ErrInvalid, i)
	case *redis.ClusterClient:
		return "", fmt.Errorf("%w: redlock: node %d is a Cluster client (%s): a Cluster is one lock service, not independent nodes; give one client per independent master",
			driver.ErrInvalid, i, strings.Join(c.Options().Addrs, ","))
	case *redis.Ring:
		return "", fmt.Errorf("%w: redlock: node %d is a Ring client, which spreads keys over several servers; give one client per independent master",
			driver.ErrInvalid, i)
	case *redis.Client:
		o := c.Options()
		if !o.ContextTimeoutEnabled {
			return "", fmt.Errorf("%w: redlock: node %d (%s) has ContextTimeoutEnabled off, so its calls would ignore the per-node timeout; set it in its redis.Options",
				driver.ErrInvalid, i, o.Addr)
		}
		if o.MaxRetries > 0 {
			return "", fmt.Errorf("%w: redlock: node %d (%s) retries commands (MaxRetries %d): a retry after an attempt that ran hides it (a reset, then a refused re-dial, reads as surely not applied), and the lock would stay on that node for a TTL; set MaxRetries: -1 in its redis.Options",
				driver.ErrInvalid, i, o.Addr, o.MaxRetries)
		}
		if o.Addr == "FailoverClient" { // go-redis's placeholder for Sentinel clients
			return "", nil
		}
		return o.Addr, nil
	}
	return "", nil
}

// canonicalAddr makes equal the spellings of one address that need no
// name lookup: case, and the loopback names.
func canonicalAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return strings.ToLower(addr)
	}
	host = strings.ToLower(host)
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() || host == "" || host == "localhost" {
		host = "loopback"
	}
	return net.JoinHostPort(host, port)
}
