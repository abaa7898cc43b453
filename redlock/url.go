package redlock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redisurl"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// URL schemes registered with [dlock.Open]: plain TCP and TLS to every node.
const (
	Scheme    = "redlock"
	SchemeTLS = "redlocks"
)

func init() {
	driver.Register(Scheme, Open)
	driver.Register(SchemeTLS, Open)
}

// ownParams are this package's own query parameters; drift is also
// dlock's common parameter, and the Locker and the driver share it.
var ownParams = []string{"node_timeout", "drift", "fencing"}

func init() { driver.PublicParams(ownParams...) }

// Open opens a Redlock driver for a redlock:// or redlocks:// URL (see the
// package documentation); [dlock.Open] calls it with the URL parsed
// strictly. It makes one go-redis client per host, with
// ContextTimeoutEnabled, one dial per connection attempt and no command
// retries (a failed node counts as failed for its round: see
// internal/redisurl), and checks them within ctx: it fails unless a
// majority passes, so a wrong password or a majority of unreachable nodes
// fails here, and returns as soon as a majority passed. Close closes the
// clients.
func Open(ctx context.Context, u *url.URL) (driver.Locker, error) {
	red := driver.Redacted(u)
	if u.Scheme != Scheme && u.Scheme != SchemeTLS {
		return nil, fmt.Errorf("%w: redlock: scheme %q in %s is not %s or %s", driver.ErrInvalid, u.Scheme, red, Scheme, SchemeTLS)
	}
	useTLS := u.Scheme == SchemeTLS
	q, err := driver.Query(u)
	if err != nil {
		return nil, err
	}
	if err := redisurl.Check(u, q, redisurl.Redlock, useTLS, ownParams...); err != nil {
		return nil, err
	}
	o, err := urlOptions(q, red)
	if err != nil {
		return nil, err
	}
	conn, err := redisurl.NewConn(u, q, useTLS)
	if err != nil {
		return nil, err
	}
	hosts, err := driver.HostList(u, "6379")
	if err != nil {
		return nil, fmt.Errorf("%w; want %s://HOST:PORT,HOST:PORT,HOST:PORT[/DB]", err, u.Scheme)
	}
	secret := driver.Password(u)
	var clients []redis.UniversalClient
	closeAll := func() {
		for _, c := range clients {
			c.Close()
		}
	}
	for _, h := range hosts {
		ro, err := conn.Client(redisurl.Redlock, h, u.Path)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("redlock: node %s: %w", h, err)
		}
		clients = append(clients, redis.NewClient(ro))
	}
	l, err := newRedis(clients, o)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("%s: %w", red, err)
	}
	for _, c := range clients {
		l.closers = append(l.closers, c.Close)
	}
	if err := l.checkNodes(ctx, red, secret); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// checkNodes checks each node as redis:// checks its server: reachable,
// and its user allowed every command and channel the driver needs. That
// takes a few round trips (and a pub/sub connection), so each gets four
// node timeouts, at least a second. Once a majority passed, it succeeds
// whatever the others answer; it waits as long again for them, and leaves
// the rest running until Close or the end of ctx: a dead or slow node
// does not hold Open for its timeout. red names the URL in errors, which
// never show secret.
func (l *locker) checkNodes(ctx context.Context, red, secret string) error {
	errs := make([]error, len(l.nodes))
	ok := 0
	check := max(4*l.cfg.timeoutFor(l.cfg.lockTTL), time.Second)
	start := time.Now()
	rest := l.ask(ctx, l.all, check, func(ctx context.Context, i int) (driver.Result, error) {
		c, ok := l.nodes[i].d.(accessChecker)
		if !ok {
			return driver.Result{}, fmt.Errorf("%w: redlock: node %d's driver, a %T, cannot check access", driver.ErrInvalid, i, l.nodes[i].d)
		}
		return driver.Result{}, c.CheckAccess(ctx)
	}, func(i int, _ driver.Result, err error) bool {
		if err == nil {
			ok++
			return ok >= l.quorum
		}
		if refused(err) && !errors.Is(err, driver.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", driver.ErrUnavailable, err)
		}
		errs[i] = driver.Scrub(err, secret)
		return false
	}, nil)
	rest(max(time.Since(start), time.Millisecond))
	if ok < l.quorum {
		return l.quorumError("open", red, ok, errs, nil)
	}
	return nil
}

// accessChecker is the check that redisdriver's URLs make at open, which
// the drivers of redisdriver.NewDriver offer: the server answers, and its
// user has every permission the driver needs.
type accessChecker interface {
	CheckAccess(ctx context.Context) error
}

// refused reports whether err means that no connection could be made.
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" || errors.Is(err, syscall.ECONNREFUSED)
}

// urlOptions reads the driver's parameters from a URL's query: its own,
// redisdriver's for every node, and dlock's ttl, which sets the node
// timeout of calls that carry no TTL.
func urlOptions(q url.Values, red string) (*Options, error) {
	lock, err := redisurl.ParseLock(q, red)
	if err != nil {
		return nil, err
	}
	o := &Options{Redis: &redisdriver.Options{Prefix: lock.Prefix, FenceExpiry: lock.FenceExpiry,
		ReplicaAcks: lock.ReplicaAcks, ReplicaTimeout: lock.ReplicaTimeout}}
	if o.NodeTimeout, err = redisurl.Duration(q, "node_timeout", red, "100ms"); err != nil {
		return nil, err
	}
	if o.Drift, err = redisurl.Duration(q, "drift", red, "100ms"); err != nil {
		return nil, err
	}
	ttl, err := redisurl.Duration(q, "ttl", red, "15s")
	if err != nil {
		return nil, err
	}
	if ttl > 0 {
		o.Lock = &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: ttl}}
	}
	if q.Has("fencing") {
		on, err := redisurl.Bool(q, "fencing", red)
		if err != nil {
			return nil, err
		}
		o.DisableFencing = !on
	}
	return o, nil
}
