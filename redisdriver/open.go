package redisdriver

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/redis/go-redis/v9"
)

// URL schemes registered with [dlock.Open].
const (
	Scheme              = "redis"
	SchemeTLS           = "rediss"
	SchemeCluster       = "redis+cluster"
	SchemeClusterTLS    = "rediss+cluster"
	SchemeSentinel      = "redis+sentinel"
	SchemeSentinelTLS   = "rediss+sentinel"
	paramPrefix         = "prefix"
	paramFenceExpiry    = "fence_expiry"
	paramReplicaAcks    = "replica_acks"
	paramReplicaTimeout = "replica_timeout"
	paramSentinelAuth   = "sentinel_auth"
)

func init() {
	for _, s := range []string{Scheme, SchemeTLS, SchemeCluster, SchemeClusterTLS, SchemeSentinel, SchemeSentinelTLS} {
		dlock.Register(s, Open)
	}
}

// lockParams are the driver's own query parameters.
var lockParams = []string{paramPrefix, paramFenceExpiry, paramReplicaAcks, paramReplicaTimeout}

// Client parameters passed through to go-redis, per kind of client: the
// ones its URL parsers accept (redis.ParseURL, ParseClusterURL,
// ParseFailoverURL), less those that would put a secret in the query
// (password) and those the URL's own parts set.
var (
	commonParams = []string{
		"protocol", "client_name", "max_retries", "min_retry_backoff", "max_retry_backoff",
		"dial_timeout", "read_timeout", "write_timeout", "pool_fifo", "pool_size", "pool_timeout",
		"min_idle_conns", "max_idle_conns", "max_active_conns", "max_concurrent_dials",
		"pipeline_pool_size", "pipeline_read_buffer_size", "pipeline_write_buffer_size",
		"conn_max_idle_time", "conn_max_lifetime", "conn_max_lifetime_jitter",
	}
	standaloneParams = append([]string{"db", "skip_verify", "idle_timeout", "max_conn_age"}, commonParams...)
	clusterParams    = append([]string{"max_redirects", "read_only", "route_by_latency", "route_by_latency_tolerance",
		"route_randomly", "dialer_retries", "dialer_retry_timeout", "failing_timeout_seconds"}, commonParams...)
	sentinelParams = append([]string{"db", "skip_verify", "replica_only", "use_disconnected_replicas",
		"dialer_retries", "dialer_retry_timeout", paramSentinelAuth}, commonParams...)
)

// Open opens a driver for a URL of one of the registered schemes; see the
// package documentation for the forms and parameters. [dlock.Open] calls
// it after removing the common parameters (ttl, renew, drift, owner).
//
// Open makes the client, checks it with one round trip (so a wrong
// address, password or permission fails here, within ctx), and returns a
// driver that closes the client on Close.
func Open(ctx context.Context, u *url.URL) (driver.Locker, error) {
	safe := redacted(u) // for messages
	red := safe.String()
	opts, q, err := lockOptions(u, red)
	if err != nil {
		return nil, err
	}
	var secret string
	if u.User != nil {
		secret, _ = u.User.Password()
	}
	scrub := func(err error) error { return scrubbed(err, secret) }

	var client redis.UniversalClient
	switch u.Scheme {
	case Scheme, SchemeTLS:
		if err := dlock.UnknownParams(safe, append(standaloneParams, lockParams...)...); err != nil {
			return nil, err
		}
		v := *u
		v.RawQuery = q.Encode()
		o, err := redis.ParseURL(v.String())
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", dlock.ErrInvalid, red, scrub(err))
		}
		o.ContextTimeoutEnabled = true
		client = redis.NewClient(o)
	case SchemeCluster, SchemeClusterTLS:
		if err := dlock.UnknownParams(safe, append(clusterParams, lockParams...)...); err != nil {
			return nil, err
		}
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("%w: %s: a Cluster URL has no path (Cluster has only database 0)", dlock.ErrInvalid, red)
		}
		hosts, err := splitHosts(u)
		if err != nil {
			return nil, err
		}
		v := *u
		v.Scheme = strings.TrimSuffix(u.Scheme, "+cluster")
		v.Host = hosts[0]
		v.Path = ""
		for _, h := range hosts[1:] {
			q.Add("addr", h)
		}
		v.RawQuery = q.Encode()
		o, err := redis.ParseClusterURL(v.String())
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", dlock.ErrInvalid, red, scrub(err))
		}
		o.ContextTimeoutEnabled = true
		client = redis.NewClusterClient(o)
	case SchemeSentinel, SchemeSentinelTLS:
		if err := dlock.UnknownParams(safe, append(sentinelParams, lockParams...)...); err != nil {
			return nil, err
		}
		hosts, err := splitHosts(u)
		if err != nil {
			return nil, err
		}
		parts := strings.Split(strings.Trim(u.Path, "/"), "/")
		if parts[0] == "" || len(parts) > 2 {
			return nil, fmt.Errorf("%w: %s: want redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]", dlock.ErrInvalid, red)
		}
		sentinelAuth := q.Get(paramSentinelAuth)
		q.Del(paramSentinelAuth)
		v := url.URL{Scheme: strings.TrimSuffix(u.Scheme, "+sentinel"), Host: hosts[0]}
		if len(parts) == 2 {
			v.Path = "/" + parts[1]
		}
		q.Set("master_name", parts[0])
		for _, h := range hosts[1:] {
			q.Add("addr", h)
		}
		v.RawQuery = q.Encode()
		o, err := redis.ParseFailoverURL(v.String())
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", dlock.ErrInvalid, red, scrub(err))
		}
		if u.User != nil {
			o.Username = u.User.Username()
			o.Password = secret
		}
		switch sentinelAuth {
		case "", "false", "0":
		case "true", "1":
			o.SentinelUsername, o.SentinelPassword = o.Username, o.Password
		default:
			return nil, fmt.Errorf("%w: %s: sentinel_auth=%q is not true or false", dlock.ErrInvalid, red, sentinelAuth)
		}
		o.ContextTimeoutEnabled = true
		client = redis.NewFailoverClient(o)
	default:
		return nil, fmt.Errorf("%w: redisdriver: scheme %q in %s is not one of redis, rediss, redis+cluster, rediss+cluster, redis+sentinel, rediss+sentinel", dlock.ErrInvalid, u.Scheme, red)
	}

	d := newLocker(client, opts, true)
	if d.err != nil {
		client.Close()
		return nil, fmt.Errorf("%s: %w", red, d.err)
	}
	lk := d.lockKey("open-check")
	if err := checkScript.Run(ctx, client, []string{lk}).Err(); err != nil {
		d.Close()
		err = d.wrap("open "+red, "", err)
		var uo *unknownOutcomeError
		if errors.As(err, &uo) {
			err = fmt.Errorf("%w (if the server wants TLS, use rediss://)", err)
		}
		return nil, scrub(err)
	}
	return d.openChecked(ctx, red)
}

// lockOptions reads the driver's own parameters from u's query and returns
// them with the query that remains.
func lockOptions(u *url.URL, red string) (*Options, url.Values, error) {
	q := u.Query()
	var o Options
	bad := func(name, v, want string) error {
		return fmt.Errorf("%w: %s=%q in %s is not %s", dlock.ErrInvalid, name, v, red, want)
	}
	if q.Has(paramPrefix) {
		o.Prefix = q.Get(paramPrefix)
		if o.Prefix == "" {
			return nil, nil, bad(paramPrefix, "", "a non-empty prefix")
		}
	}
	for name, dst := range map[string]*time.Duration{paramFenceExpiry: &o.FenceExpiry, paramReplicaTimeout: &o.ReplicaTimeout} {
		if v := q.Get(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return nil, nil, bad(name, v, "a positive duration such as 1s")
			}
			*dst = d
		}
	}
	if v := q.Get(paramReplicaAcks); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, nil, bad(paramReplicaAcks, v, "a whole number ≥ 0")
		}
		o.ReplicaAcks = n
	}
	for _, p := range lockParams {
		q.Del(p)
	}
	return &o, q, nil
}

// splitHosts returns the comma-separated host:port list of a Cluster or
// Sentinel URL.
func splitHosts(u *url.URL) ([]string, error) {
	hosts := strings.Split(u.Host, ",")
	if slices.Contains(hosts, "") {
		return nil, fmt.Errorf("%w: %s: empty host in the list", dlock.ErrInvalid, redacted(u))
	}
	for i, h := range hosts {
		if !strings.Contains(h, ":") {
			hosts[i] = h + ":6379"
		}
	}
	return hosts, nil
}

// redacted returns a copy of u fit for messages: the password of its user
// information and the values of query parameters that look like secrets
// (which go-redis's own parsers would read, and this driver rejects) are
// replaced by "xxxxx".
func redacted(u *url.URL) *url.URL {
	v := *u
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			v.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := u.Query()
	changed := false
	for k := range q {
		lk := strings.ToLower(k)
		if strings.Contains(lk, "pass") || strings.Contains(lk, "secret") || strings.Contains(lk, "token") {
			q[k] = []string{"xxxxx"}
			changed = true
		}
	}
	if changed {
		v.RawQuery = q.Encode()
	}
	return &v
}

// scrubbed returns err, or a copy of its text without secret if the text
// contains it (go-redis errors may quote what they were given).
func scrubbed(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &scrubbedError{msg: strings.ReplaceAll(err.Error(), secret, "xxxxx"), err: err}
}

// scrubbedError hides a secret in its text but keeps the chain for
// errors.Is, so dlock.ErrUnavailable and the like still match.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }
