package redlock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// URL schemes registered with [dlock.Open]: plain TCP and TLS to every node.
const (
	Scheme    = "redlock"
	SchemeTLS = "redlocks"
)

func init() {
	dlock.Register(Scheme, Open)
	dlock.Register(SchemeTLS, Open)
}

// Query parameters of this package, of redisdriver, and of go-redis's
// ParseURL (less db, which is the path, and those that would put a secret
// in the query).
var (
	ownParams    = []string{"node_timeout", "drift", "fencing"}
	redisParams  = []string{"prefix", "fence_expiry", "replica_acks", "replica_timeout"}
	clientParams = []string{
		"protocol", "client_name", "max_retries", "min_retry_backoff", "max_retry_backoff",
		"dial_timeout", "read_timeout", "write_timeout", "pool_fifo", "pool_size", "pool_timeout",
		"min_idle_conns", "max_idle_conns", "max_active_conns", "max_concurrent_dials",
		"pipeline_pool_size", "pipeline_read_buffer_size", "pipeline_write_buffer_size",
		"conn_max_idle_time", "conn_max_lifetime", "conn_max_lifetime_jitter", "skip_verify",
	}
)

// Open opens a Redlock driver for a redlock:// or redlocks:// URL (see the
// package documentation); [dlock.Open] calls it after removing its common
// parameters. It makes one go-redis client per host, with
// ContextTimeoutEnabled, and checks them with one round trip each within
// ctx: it fails unless a majority answers, so a wrong password or a
// majority of unreachable nodes fails here. Close closes the clients.
func Open(ctx context.Context, u *url.URL) (driver.Locker, error) {
	red := dlock.Redacted(u)
	known := slices.Concat(ownParams, redisParams, clientParams)
	if err := dlock.UnknownParams(u, known...); err != nil {
		return nil, err
	}
	if u.Scheme != Scheme && u.Scheme != SchemeTLS {
		return nil, fmt.Errorf("%w: redlock: scheme %q in %s is not %s or %s", dlock.ErrInvalid, u.Scheme, red, Scheme, SchemeTLS)
	}
	q := u.Query()
	bad := func(name, want string) error {
		return fmt.Errorf("%w: %s=%q in %s is not %s", dlock.ErrInvalid, name, q.Get(name), red, want)
	}
	o := Options{Redis: &redisdriver.Options{}}
	durations := map[string]*time.Duration{
		"node_timeout": &o.NodeTimeout, "drift": &o.Drift,
		"fence_expiry": &o.Redis.FenceExpiry, "replica_timeout": &o.Redis.ReplicaTimeout,
	}
	for name, dst := range durations {
		if v := q.Get(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return nil, bad(name, "a positive duration such as 100ms")
			}
			*dst = d
		}
	}
	if v := q.Get("fencing"); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return nil, bad("fencing", "true or false")
		}
		o.DisableFencing = !on
	}
	if q.Has("prefix") {
		if o.Redis.Prefix = q.Get("prefix"); o.Redis.Prefix == "" {
			return nil, bad("prefix", "a non-empty prefix")
		}
	}
	if v := q.Get("replica_acks"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, bad("replica_acks", "a whole number ≥ 0")
		}
		o.Redis.ReplicaAcks = n
	}
	for _, p := range slices.Concat(ownParams, redisParams) {
		q.Del(p)
	}
	hosts := strings.Split(u.Host, ",")
	if slices.Contains(hosts, "") {
		return nil, fmt.Errorf("%w: redlock: empty host in %s; want %s://HOST:PORT,HOST:PORT,HOST:PORT[/DB]", dlock.ErrInvalid, red, u.Scheme)
	}
	var secret string
	if u.User != nil {
		secret, _ = u.User.Password()
	}
	scheme := "redis"
	if u.Scheme == SchemeTLS {
		scheme = "rediss"
	}
	var clients []redis.UniversalClient
	closeAll := func() {
		for _, c := range clients {
			c.Close()
		}
	}
	for _, h := range hosts {
		if !strings.Contains(h, ":") {
			h += ":6379"
		}
		nu := url.URL{Scheme: scheme, User: u.User, Host: h, Path: u.Path, RawQuery: q.Encode()}
		ro, err := redis.ParseURL(nu.String())
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("%w: redlock: %s: node %s: %w", dlock.ErrInvalid, red, h, scrubbed(err, secret))
		}
		ro.ContextTimeoutEnabled = true
		clients = append(clients, redis.NewClient(ro))
	}
	l, err := newRedis(clients, &o)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("%s: %w", red, err)
	}
	for _, c := range clients {
		l.closers = append(l.closers, c.Close)
	}
	errs := make([]error, len(clients))
	l.round(ctx, l.all, l.cfg.timeoutFor(l.cfg.lockTTL), func(ctx context.Context, i int) {
		if err := clients[i].Ping(ctx).Err(); err != nil {
			if refused(err) {
				err = fmt.Errorf("%w: %w", driver.ErrUnavailable, err)
			}
			errs[i] = scrubbed(err, secret)
		}
	})
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		}
	}
	if ok < l.quorum {
		l.Close()
		return nil, l.quorumError("open", red, ok, errs, nil)
	}
	return l.withCapabilities(), nil
}

// scrubbed returns err, or err with secret replaced in its text if it
// contains it (go-redis errors may quote what they were given).
func scrubbed(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &scrubbedError{msg: strings.ReplaceAll(err.Error(), secret, "xxxxx"), err: err}
}

// scrubbedError hides a secret in its text and keeps the chain.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// refused reports whether err means that no connection could be made.
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" || errors.Is(err, syscall.ECONNREFUSED)
}
