package redisdriver

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redisurl"
	"github.com/redis/go-redis/v9"
)

// URL schemes registered with [dlock.Open].
const (
	Scheme            = "redis"
	SchemeTLS         = "rediss"
	SchemeCluster     = "redis+cluster"
	SchemeClusterTLS  = "rediss+cluster"
	SchemeSentinel    = "redis+sentinel"
	SchemeSentinelTLS = "rediss+sentinel"
)

// schemes maps each scheme to its kind of client and whether it uses TLS.
var schemes = map[string]struct {
	kind redisurl.Kind
	tls  bool
}{
	Scheme:            {redisurl.Standalone, false},
	SchemeTLS:         {redisurl.Standalone, true},
	SchemeCluster:     {redisurl.Cluster, false},
	SchemeClusterTLS:  {redisurl.Cluster, true},
	SchemeSentinel:    {redisurl.Sentinel, false},
	SchemeSentinelTLS: {redisurl.Sentinel, true},
}

func init() {
	for _, s := range []string{Scheme, SchemeTLS, SchemeCluster, SchemeClusterTLS, SchemeSentinel, SchemeSentinelTLS} {
		dlock.Register(s, Open)
	}
}

// Open opens a driver for a URL of one of the registered schemes; see the
// package documentation for the forms and parameters. [dlock.Open] calls
// it with the URL parsed strictly.
//
// Open makes the client, checks it with one round trip (so a wrong
// address, password or permission fails here, within ctx), and returns a
// driver that closes the client on Close.
func Open(ctx context.Context, u *url.URL) (driver.Locker, error) {
	client, opts, err := newClient(u)
	if err != nil {
		return nil, err
	}
	red := driver.Redacted(u)
	scrub := func(err error) error { return driver.Scrub(err, driver.Password(u)) }
	d := newLocker(client, opts, true)
	if d.err != nil {
		client.Close()
		return nil, fmt.Errorf("%s: %w", red, d.err)
	}
	if err := d.checkAccess(ctx, "open "+red); err != nil {
		d.Close()
		var uo *unknownOutcomeError
		if errors.As(err, &uo) && !schemes[u.Scheme].tls {
			err = fmt.Errorf("%w (if the server wants TLS, use rediss://)", err)
		}
		return nil, scrub(err)
	}
	return d, nil
}

// CheckAccess checks, within ctx, that the server behind d, a driver made
// by [NewDriver], answers and that its user has every permission the
// driver needs (see Permissions in the package docs): that it may run the
// scripts and each command they run, on keys under the prefix, and use
// the driver's channels (a [*ChannelPermissionError] if not). [Open] does
// it; a driver that composes others over clients it was given (redlock's
// Open) does it for each. A driver not made by this package is refused
// with [dlock.ErrInvalid].
func CheckAccess(ctx context.Context, d driver.Locker) error {
	l, ok := d.(*locker)
	if !ok {
		return fmt.Errorf("%w: redisdriver: CheckAccess of a %T, not a driver of this package", dlock.ErrInvalid, d)
	}
	if err := l.check(); err != nil {
		return err
	}
	return l.checkAccess(ctx, "check access")
}

// checkAccess runs checkScript, then checkChannels; op starts its
// errors.
func (d *locker) checkAccess(ctx context.Context, op string) error {
	acks := "0"
	if d.cfg.replicaAcks > 0 {
		acks = "1"
	}
	v, err := checkScript.Run(ctx, d.client, []string{d.lockKey("open-check")}, acks).Result()
	if err != nil {
		return d.wrap(op, "", err)
	}
	if v == "!READONLY" {
		return fmt.Errorf("redisdriver: %s: the server is a read-only replica, which refuses every lock; give the master's address (or redis+sentinel:// to follow failovers): %w",
			op, driver.ErrUnavailable)
	}
	if refused, ok := v.(string); ok {
		return fmt.Errorf("redisdriver: %s: the Redis user may not run %s on keys under %q, which the driver needs (see Permissions in the package docs)",
			op, refused, d.cfg.prefix)
	}
	if err := d.checkChannels(ctx); err != nil {
		return fmt.Errorf("redisdriver: %s: %w", op, err)
	}
	return nil
}

// newClient makes the client and driver options of u, without I/O.
func newClient(u *url.URL) (redis.UniversalClient, *Options, error) {
	red := driver.Redacted(u)
	s, ok := schemes[u.Scheme]
	if !ok {
		return nil, nil, fmt.Errorf("%w: redisdriver: scheme %q in %s is not one of redis, rediss, redis+cluster, rediss+cluster, redis+sentinel, rediss+sentinel", dlock.ErrInvalid, u.Scheme, red)
	}
	q, err := driver.Query(u)
	if err != nil {
		return nil, nil, err
	}
	if err := redisurl.Check(u, q, s.kind, s.tls); err != nil {
		return nil, nil, err
	}
	lock, err := redisurl.ParseLock(q, red)
	if err != nil {
		return nil, nil, err
	}
	opts := &Options{Prefix: lock.Prefix, FenceExpiry: lock.FenceExpiry, ReplicaAcks: lock.ReplicaAcks, ReplicaTimeout: lock.ReplicaTimeout}
	conn, err := redisurl.NewConn(u, q, s.tls)
	if err != nil {
		return nil, nil, err
	}
	hosts, err := driver.HostList(u, "6379")
	if err != nil {
		return nil, nil, err
	}
	switch s.kind {
	case redisurl.Standalone:
		if len(hosts) > 1 {
			return nil, nil, fmt.Errorf("%w: %s: several hosts; use %s+cluster:// for a Cluster, %s+sentinel:// for Sentinels, or redlock:// for a quorum of independent servers",
				dlock.ErrInvalid, red, u.Scheme, u.Scheme)
		}
		o, err := conn.Client(redisurl.Standalone, hosts[0], u.Path)
		if err != nil {
			return nil, nil, err
		}
		return redis.NewClient(o), opts, nil
	case redisurl.Cluster:
		if u.Path != "" && u.Path != "/" {
			return nil, nil, fmt.Errorf("%w: %s: a Cluster URL has no path (Cluster has only database 0)", dlock.ErrInvalid, red)
		}
		o, err := conn.ClusterClient(hosts)
		if err != nil {
			return nil, nil, err
		}
		return redis.NewClusterClient(o), opts, nil
	default:
		parts := strings.Split(strings.Trim(u.Path, "/"), "/")
		if parts[0] == "" || len(parts) > 2 {
			return nil, nil, fmt.Errorf("%w: %s: want %s://HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]", dlock.ErrInvalid, red, u.Scheme)
		}
		auth, err := redisurl.Bool(q, redisurl.ParamSentinelAuth, red)
		if err != nil {
			return nil, nil, err
		}
		// Locks are written on the master: on a replica they are refused
		// (READONLY, retried until the caller gives up) or, on a writable
		// replica, kept where no other client sees them.
		if replicas, err := redisurl.Bool(q, "replica_only", red); err != nil || replicas {
			if err == nil {
				err = fmt.Errorf("%w: %s: replica_only=true would take locks on replicas; locks need the master", dlock.ErrInvalid, red)
			}
			return nil, nil, err
		}
		path := ""
		if len(parts) == 2 {
			path = "/" + parts[1]
		}
		o, err := conn.FailoverClient(hosts, parts[0], path, auth)
		if err != nil {
			return nil, nil, err
		}
		return redis.NewFailoverClient(o), opts, nil
	}
}
