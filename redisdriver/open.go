package redisdriver

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redisurl"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
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
		driver.Register(s, open)
	}
}

// open opens a driver for a URL of one of the registered schemes; see the
// package documentation for the forms and parameters. [dlock.Open] calls
// it with the URL parsed strictly.
//
// open makes the client, checks it with one round trip (so a wrong
// address, password or permission fails here, within ctx), and returns a
// driver that closes the client on Close. With a Sentinel URL it first
// asks each Sentinel once for the master, so that open fails within about
// one dial when none answers; with redis:// or rediss:// it refuses a
// server that is a Cluster node (its HELLO reply, or a MOVED reply, says
// so), whose other keys would get MOVED replies later.
func open(ctx context.Context, u *url.URL) (driver.Locker, error) {
	client, opts, fo, err := newClientOptions(u)
	if err != nil {
		return nil, err
	}
	red := driver.Redacted(u)
	scrub := func(err error) error { return driver.Scrub(err, driver.Password(u)) }
	if fo != nil {
		if err := checkSentinels(ctx, fo, red); err != nil {
			client.Close()
			return nil, scrub(err)
		}
	}
	d := newLocker(client, opts, true)
	d.notify.mux.FollowSentinels(fo)
	if d.err != nil {
		client.Close()
		return nil, fmt.Errorf("%s: %w", red, d.err)
	}
	standalone := schemes[u.Scheme].kind == redisurl.Standalone
	if err := d.checkAccess(ctx, "open "+red); err != nil {
		d.Close()
		if standalone && (isRedirect(err) || redis.IsClusterDownError(err)) {
			return nil, clusterNodeError(u)
		}
		var uo *unknownOutcomeError
		if errors.As(err, &uo) && !schemes[u.Scheme].tls {
			err = fmt.Errorf("%w (if the server wants TLS, use rediss://)", err)
		}
		return nil, scrub(err)
	}
	// The node that owns the check's key answers it although it is a
	// Cluster node; other keys would get MOVED replies later.
	if standalone && clusterMode(ctx, client) {
		d.Close()
		return nil, clusterNodeError(u)
	}
	return d, nil
}

// clusterNodeError says that a URL for one server names a Cluster node:
// its keys are spread over nodes that only a Cluster client follows.
func clusterNodeError(u *url.URL) error {
	return fmt.Errorf("%w: redisdriver: open %s: this is a Redis Cluster node: use %s+cluster:// (with one or more of its nodes)",
		driver.ErrInvalid, driver.Redacted(u), u.Scheme)
}

// clusterMode reports whether the server says, in its HELLO reply, that it
// runs in Cluster mode. HELLO needs no ACL permission; a server that does
// not answer it is taken as not a Cluster node.
func clusterMode(ctx context.Context, c redis.UniversalClient) bool {
	proto := 3
	if rc, ok := c.(*redis.Client); ok && rc.Options().Protocol == 2 {
		proto = 2
	}
	v, err := c.Do(ctx, "HELLO", proto).Result()
	if err != nil {
		return false
	}
	switch r := v.(type) {
	case map[any]any:
		return r["mode"] == "cluster"
	case map[string]any:
		return r["mode"] == "cluster"
	case []any:
		for i := 0; i+1 < len(r); i += 2 {
			if r[i] == "mode" {
				return r[i+1] == "cluster"
			}
		}
	}
	return false
}

// checkSentinels asks every Sentinel of fo once, in parallel, for the
// master's address, and fails unless one knows it. go-redis's failover
// client nests its retries (each command attempt redials, each redial
// asks the Sentinels, whose client retries its dials and its commands:
// 400 attempts and 36s when every Sentinel refuses), so without this
// open would fail only after all of them; here it fails within one dial
// and read timeout, naming each Sentinel's cause.
func checkSentinels(parent context.Context, fo *redis.FailoverOptions, red string) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	errs := make([]error, len(fo.SentinelAddrs))
	unknown := make([]bool, len(fo.SentinelAddrs))
	found := make(chan struct{}, len(fo.SentinelAddrs))
	var wg sync.WaitGroup
	for i, addr := range fo.SentinelAddrs {
		wg.Go(func() {
			c := redis.NewSentinelClient(&redis.Options{
				Addr: addr, ClientName: fo.ClientName,
				Username: fo.SentinelUsername, Password: fo.SentinelPassword, TLSConfig: fo.TLSConfig,
				DialTimeout: fo.DialTimeout, ReadTimeout: fo.ReadTimeout, WriteTimeout: fo.WriteTimeout,
				MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true,
				MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
			})
			defer c.Close()
			err := c.GetMasterAddrByName(ctx, fo.MasterName).Err()
			switch {
			case err == nil:
				found <- struct{}{}
				cancel() // the others need not answer
			case errors.Is(err, redis.Nil):
				unknown[i] = true
				errs[i] = fmt.Errorf("Sentinel %s does not know a master named %q", addr, fo.MasterName)
			default:
				errs[i] = fmt.Errorf("Sentinel %s: %w", addr, err)
			}
		})
	}
	wg.Wait()
	switch {
	case len(found) > 0:
		return nil
	case parent.Err() != nil:
		return fmt.Errorf("redisdriver: open %s: asking the Sentinels for master %q: %w", red, fo.MasterName, context.Cause(parent))
	}
	why := "no Sentinel answered"
	if slices.Contains(unknown, true) {
		why = fmt.Sprintf("no Sentinel knows master %q", fo.MasterName)
	}
	return fmt.Errorf("redisdriver: open %s: %w: %s: %w", red, driver.ErrUnavailable, why, &joinedError{errors.Join(errs...)})
}

// joinedError is errors.Join on one line.
type joinedError struct{ err error }

func (e *joinedError) Error() string   { return strings.ReplaceAll(e.err.Error(), "\n", "; ") }
func (e *joinedError) Unwrap() []error { return e.err.(interface{ Unwrap() []error }).Unwrap() }

// newClient makes the client and driver options of u, without I/O.
func newClient(u *url.URL) (redis.UniversalClient, *Options, error) {
	c, o, _, err := newClientOptions(u)
	return c, o, err
}

// newClientOptions is newClient that also returns, for a Sentinel URL,
// the failover client's options.
func newClientOptions(u *url.URL) (redis.UniversalClient, *Options, *redis.FailoverOptions, error) {
	red := driver.Redacted(u)
	s, ok := schemes[u.Scheme]
	if !ok {
		return nil, nil, nil, fmt.Errorf("%w: redisdriver: scheme %q in %s is not one of redis, rediss, redis+cluster, rediss+cluster, redis+sentinel, rediss+sentinel", driver.ErrInvalid, u.Scheme, red)
	}
	q, err := driver.Query(u)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := redisurl.Check(u, q, s.kind, s.tls); err != nil {
		return nil, nil, nil, err
	}
	lock, err := redisurl.ParseLock(q, red)
	if err != nil {
		return nil, nil, nil, err
	}
	opts := &Options{Prefix: lock.Prefix, FenceExpiry: lock.FenceExpiry, ReplicaAcks: lock.ReplicaAcks, ReplicaTimeout: lock.ReplicaTimeout}
	conn, err := redisurl.NewConn(u, q, s.tls)
	if err != nil {
		return nil, nil, nil, err
	}
	hosts, err := driver.HostList(u, "6379")
	if err != nil {
		return nil, nil, nil, err
	}
	switch s.kind {
	case redisurl.Standalone:
		if len(hosts) > 1 {
			return nil, nil, nil, fmt.Errorf("%w: %s: several hosts; use %s+cluster:// for a Cluster, %s+sentinel:// for Sentinels, or redlock:// for a quorum of independent servers",
				driver.ErrInvalid, red, u.Scheme, u.Scheme)
		}
		o, err := conn.Client(redisurl.Standalone, hosts[0], u.Path)
		if err != nil {
			return nil, nil, nil, err
		}
		return redis.NewClient(o), opts, nil, nil
	case redisurl.Cluster:
		if u.Path != "" && u.Path != "/" {
			return nil, nil, nil, fmt.Errorf("%w: %s: a Cluster URL has no path (Cluster has only database 0)", driver.ErrInvalid, red)
		}
		o, err := conn.ClusterClient(hosts)
		if err != nil {
			return nil, nil, nil, err
		}
		return redis.NewClusterClient(o), opts, nil, nil
	default:
		parts := strings.Split(strings.Trim(u.Path, "/"), "/")
		if parts[0] == "" || len(parts) > 2 {
			return nil, nil, nil, fmt.Errorf("%w: %s: want %s://HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]", driver.ErrInvalid, red, u.Scheme)
		}
		auth, err := redisurl.Bool(q, redisurl.ParamSentinelAuth, red)
		if err != nil {
			return nil, nil, nil, err
		}
		// Locks are written on the master: on a replica they are refused
		// (READONLY, retried until the caller gives up) or, on a writable
		// replica, kept where no other client sees them.
		if replicas, err := redisurl.Bool(q, "replica_only", red); err != nil || replicas {
			if err == nil {
				err = fmt.Errorf("%w: %s: replica_only=true would take locks on replicas; locks need the master", driver.ErrInvalid, red)
			}
			return nil, nil, nil, err
		}
		path := ""
		if len(parts) == 2 {
			path = "/" + parts[1]
		}
		o, err := conn.FailoverClient(hosts, parts[0], path, auth)
		if err != nil {
			return nil, nil, nil, err
		}
		return redis.NewFailoverClient(o), opts, o, nil
	}
}

// checkClient refuses a client whose calls ignore context deadlines: a
// standalone, Sentinel or Cluster client without ContextTimeoutEnabled.
// Clients of other types (wrappers) are taken as they are.
func checkClient(c redis.UniversalClient) error {
	var enabled bool
	switch c := c.(type) {
	case *redis.Client:
		enabled = c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		enabled = c.Options().ContextTimeoutEnabled
	default:
		return nil
	}
	if !enabled {
		return fmt.Errorf("%w: redisdriver: the client's options leave ContextTimeoutEnabled false, so its calls ignore context deadlines, on which lease renewal relies to give up a refresh before the lease's deadline; set ContextTimeoutEnabled: true", driver.ErrInvalid)
	}
	return nil
}
