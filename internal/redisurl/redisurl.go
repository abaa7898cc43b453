// Package redisurl turns the query parameters and hosts of dlock's Redis
// URLs (redisdriver's and redlock's schemes) into go-redis options. It is
// the one copy of the parameter lists, their checks and the TLS rules, so
// that both drivers accept the same parameters and print URLs the same way.
package redisurl

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/redis/go-redis/v9"
)

// Kind is a kind of client, as a set so that a parameter can name several.
type Kind int

// Kinds of client.
const (
	Standalone Kind = 1 << iota // redis://, rediss://
	Cluster                     // redis+cluster://, rediss+cluster://
	Sentinel                    // redis+sentinel://, rediss+sentinel://
	Redlock                     // redlock://, redlocks://: one standalone client per node

	All = Standalone | Cluster | Sentinel | Redlock
)

// Param documents one query parameter. The driver docs list the same
// parameters; a test opens every parameter on every kind it names.
type Param struct {
	Name    string
	Kinds   Kind   // the kinds of client that accept it
	TLSOnly bool   // only on TLS schemes
	Example string // a valid value, for tests
	goRedis bool   // passed to go-redis's URL parser
}

// Lock parameters: redisdriver.Options, for every kind.
const (
	ParamPrefix         = "prefix"
	ParamFenceExpiry    = "fence_expiry"
	ParamReplicaAcks    = "replica_acks"
	ParamReplicaTimeout = "replica_timeout"
	ParamSkipVerify     = "skip_verify"
	ParamTLSServerName  = "tls_server_name"
	ParamSentinelAuth   = "sentinel_auth"
)

// Params are the documented parameters of the Redis schemes, less the
// common ones (ttl, renew, drift, owner, fencing) and redlock's own.
var Params = []Param{
	{Name: ParamPrefix, Kinds: All, Example: "dlock-url:"},
	{Name: ParamFenceExpiry, Kinds: All, Example: "1h"},
	{Name: ParamReplicaAcks, Kinds: All, Example: "0"},
	{Name: ParamReplicaTimeout, Kinds: All, Example: "500ms"},
	{Name: ParamSkipVerify, Kinds: All, TLSOnly: true, Example: "true"},
	{Name: ParamTLSServerName, Kinds: All, TLSOnly: true, Example: "localhost"},
	{Name: ParamSentinelAuth, Kinds: Sentinel, Example: "false"},

	// go-redis client parameters.
	{Name: "db", Kinds: Standalone | Sentinel, Example: "0", goRedis: true},
	{Name: "protocol", Kinds: All, Example: "3", goRedis: true},
	{Name: "client_name", Kinds: All, Example: "dlocktest", goRedis: true},
	{Name: "max_retries", Kinds: All, Example: "2", goRedis: true},
	{Name: "min_retry_backoff", Kinds: All, Example: "8ms", goRedis: true},
	{Name: "max_retry_backoff", Kinds: All, Example: "512ms", goRedis: true},
	{Name: "dial_timeout", Kinds: All, Example: "2s", goRedis: true},
	{Name: "read_timeout", Kinds: All, Example: "2s", goRedis: true},
	{Name: "write_timeout", Kinds: All, Example: "2s", goRedis: true},
	{Name: "pool_fifo", Kinds: All, Example: "true", goRedis: true},
	{Name: "pool_size", Kinds: All, Example: "4", goRedis: true},
	{Name: "pool_timeout", Kinds: All, Example: "2s", goRedis: true},
	{Name: "min_idle_conns", Kinds: All, Example: "1", goRedis: true},
	{Name: "max_idle_conns", Kinds: All, Example: "4", goRedis: true},
	{Name: "max_active_conns", Kinds: All, Example: "8", goRedis: true},
	{Name: "max_concurrent_dials", Kinds: All, Example: "2", goRedis: true},
	{Name: "pipeline_pool_size", Kinds: All, Example: "4", goRedis: true},
	{Name: "pipeline_read_buffer_size", Kinds: All, Example: "32768", goRedis: true},
	{Name: "pipeline_write_buffer_size", Kinds: All, Example: "32768", goRedis: true},
	{Name: "conn_max_idle_time", Kinds: All, Example: "1m", goRedis: true},
	{Name: "conn_max_lifetime", Kinds: All, Example: "1h", goRedis: true},
	{Name: "conn_max_lifetime_jitter", Kinds: All, Example: "1s", goRedis: true},
	{Name: "idle_timeout", Kinds: Standalone | Redlock, Example: "1m", goRedis: true},
	{Name: "max_conn_age", Kinds: Standalone | Redlock, Example: "1h", goRedis: true},
	{Name: "max_redirects", Kinds: Cluster, Example: "3", goRedis: true},
	{Name: "read_only", Kinds: Cluster, Example: "false", goRedis: true},
	{Name: "route_by_latency", Kinds: Cluster, Example: "false", goRedis: true},
	{Name: "route_by_latency_tolerance", Kinds: Cluster, Example: "1ms", goRedis: true},
	{Name: "route_randomly", Kinds: Cluster, Example: "false", goRedis: true},
	{Name: "failing_timeout_seconds", Kinds: Cluster, Example: "15", goRedis: true},
	{Name: "dialer_retries", Kinds: Cluster | Sentinel, Example: "2", goRedis: true},
	{Name: "dialer_retry_timeout", Kinds: Cluster | Sentinel, Example: "100ms", goRedis: true},
	{Name: "replica_only", Kinds: Sentinel, Example: "false", goRedis: true},
	{Name: "use_disconnected_replicas", Kinds: Sentinel, Example: "false", goRedis: true},
}

func init() {
	for _, p := range Params {
		driver.PublicParams(p.Name)
	}
}

// Names returns the parameters that kind accepts, with TLS or without.
func Names(kind Kind, useTLS bool) []string {
	var names []string
	for _, p := range Params {
		if p.Kinds&kind != 0 && (useTLS || !p.TLSOnly) {
			names = append(names, p.Name)
		}
	}
	return names
}

// Check refuses the parameters of u that kind does not accept: a TLS
// parameter on a scheme without TLS (which would be silently ignored),
// then any unknown one. own are the driver's further parameters.
func Check(u *url.URL, q url.Values, kind Kind, useTLS bool, own ...string) error {
	if !useTLS {
		for _, p := range Params {
			if p.TLSOnly && q.Has(p.Name) {
				return fmt.Errorf("%w: %s in %s: %s applies to TLS connections only (a scheme with TLS: rediss, rediss+cluster, rediss+sentinel, redlocks), and this URL has none",
					driver.ErrInvalid, p.Name, driver.Redacted(u), p.Name)
			}
		}
	}
	return driver.UnknownParams(u, append(Names(kind, useTLS), own...)...)
}

// Lock holds the lock parameters (redisdriver.Options) of a URL.
type Lock struct {
	Prefix         string
	FenceExpiry    time.Duration
	ReplicaAcks    int
	ReplicaTimeout time.Duration
}

// ParseLock reads the lock parameters of q.
func ParseLock(q url.Values, red string) (Lock, error) {
	var o Lock
	bad := func(name, want string) error {
		return fmt.Errorf("%w: %s=%q in %s is not %s", driver.ErrInvalid, name, q.Get(name), red, want)
	}
	if q.Has(ParamPrefix) {
		if o.Prefix = q.Get(ParamPrefix); o.Prefix == "" {
			return o, bad(ParamPrefix, "a non-empty prefix")
		}
	}
	var err error
	if o.FenceExpiry, err = Duration(q, ParamFenceExpiry, red, "1s"); err != nil {
		return o, err
	}
	if o.ReplicaTimeout, err = Duration(q, ParamReplicaTimeout, red, "1s"); err != nil {
		return o, err
	}
	if q.Has(ParamReplicaAcks) {
		n, err := strconv.Atoi(q.Get(ParamReplicaAcks))
		if err != nil || n < 0 {
			return o, bad(ParamReplicaAcks, "a whole number ≥ 0")
		}
		o.ReplicaAcks = n
	}
	return o, nil
}

// Duration reads a parameter that must be a positive duration; absent is
// 0. Its error gives example as a value that would do.
func Duration(q url.Values, name, red, example string) (time.Duration, error) {
	if !q.Has(name) {
		return 0, nil
	}
	v := q.Get(name)
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%w: %s=%q in %s is not a positive duration such as %s", driver.ErrInvalid, name, v, red, example)
	}
	return d, nil
}

// Bool reads a boolean parameter: true, false, 1 or 0; absent is false.
func Bool(q url.Values, name, red string) (bool, error) {
	switch v := q.Get(name); v {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	default:
		return false, fmt.Errorf("%w: %s=%q in %s is not true or false", driver.ErrInvalid, name, v, red)
	}
}

// Conn holds what every client of one URL shares.
type Conn struct {
	User     *url.Userinfo // nil: no AUTH
	Query    url.Values    // the URL's parameters (only go-redis's are used)
	TLS      bool
	Redacted string // the URL for messages

	serverName string // tls_server_name
	skipVerify bool
}

// NewConn reads the connection parameters of u, whose query is q.
func NewConn(u *url.URL, q url.Values, useTLS bool) (*Conn, error) {
	c := &Conn{User: u.User, Query: q, TLS: useTLS, Redacted: driver.Redacted(u)}
	if user, pass := c.userPass(); user != "" && pass == "" {
		// go-redis sends no AUTH without a password: the connection
		// would silently be the default user's, with its rights.
		return nil, fmt.Errorf("%w: %s: a user name without a password, which the client would ignore (no AUTH is sent, so the connection would be the default user's); write USER:PASSWORD@, or :PASSWORD@ for the default user",
			driver.ErrInvalid, c.Redacted)
	}
	var err error
	if c.skipVerify, err = Bool(q, ParamSkipVerify, c.Redacted); err != nil {
		return nil, err
	}
	if q.Has(ParamTLSServerName) {
		if c.serverName = q.Get(ParamTLSServerName); c.serverName == "" {
			return nil, fmt.Errorf("%w: empty %s in %s", driver.ErrInvalid, ParamTLSServerName, c.Redacted)
		}
	}
	return c, nil
}

// tlsConfig returns the TLS configuration of a client, or nil without TLS.
// host is the name to verify, or "" to verify each server under the name
// or address it is dialled at (crypto/tls takes it from the address when
// ServerName is empty): a Cluster's nodes and a Sentinel's master and
// replicas are found at run time, each with its own name.
func (c *Conn) tlsConfig(host string) *tls.Config {
	if !c.TLS {
		return nil
	}
	name := host
	if c.serverName != "" {
		name = c.serverName
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, ServerName: name, InsecureSkipVerify: c.skipVerify}
}

// goRedisURL returns a URL for go-redis's parsers: host, path, and the
// go-redis parameters that kind accepts, never the user information (so
// that go-redis's errors cannot quote a password) nor a TLS scheme (the
// TLS configuration is set afterwards).
func (c *Conn) goRedisURL(kind Kind, host, path string, extra url.Values) string {
	q := url.Values{}
	for _, p := range Params {
		if p.goRedis && p.Kinds&kind != 0 && c.Query.Has(p.Name) {
			q.Set(p.Name, c.Query.Get(p.Name))
		}
	}
	for k, vs := range extra {
		q[k] = vs
	}
	v := url.URL{Scheme: "redis", Host: host, Path: path, RawQuery: q.Encode()}
	return v.String()
}

func (c *Conn) userPass() (string, string) {
	if c.User == nil {
		return "", ""
	}
	p, _ := c.User.Password()
	return c.User.Username(), p
}

func (c *Conn) wrap(err error) error {
	return fmt.Errorf("%w: %s: %w", driver.ErrInvalid, c.Redacted, err)
}

// checkDB refuses a database given in the path (dbPath, "" or "/" for
// none) and as db= with another value: go-redis would silently take db=.
func (c *Conn) checkDB(dbPath string) error {
	inPath := strings.Trim(dbPath, "/")
	if inPath != "" && c.Query.Has("db") && c.Query.Get("db") != inPath {
		return fmt.Errorf("%w: %s: the database twice, %s in the path and db=%s; give it once, in the path",
			driver.ErrInvalid, c.Redacted, inPath, c.Query.Get("db"))
	}
	return nil
}

// Client returns the options of a client of one server at host
// (HOST:PORT) and path (/DB), for kind Standalone or Redlock.
func (c *Conn) Client(kind Kind, host, path string) (*redis.Options, error) {
	if err := c.checkDB(path); err != nil {
		return nil, err
	}
	o, err := redis.ParseURL(c.goRedisURL(kind, host, path, nil))
	if err != nil {
		return nil, c.wrap(err)
	}
	o.Username, o.Password = c.userPass()
	o.TLSConfig = c.tlsConfig(hostname(host))
	if o.TLSConfig != nil {
		o.Dialer = tlsDialer(o.TLSConfig, dialTimeout(o.DialTimeout))
	}
	o.ContextTimeoutEnabled = true
	o.DialerRetries = 1
	if kind == Redlock {
		c.quorumNode(o)
	}
	return o, nil
}

// A client made from a URL dials once per connection (DialerRetries 1),
// where go-redis's default dials five times 100ms apart: dlock retries its
// own calls (an acquire with backoff, a renewal until the lease's local
// deadline), and go-redis's retries only made each call outlast its
// context and the caller's timeouts (a refused connection took 2.4 s to
// report; a rediss:// URL at a plaintext port, 25 s) and report "context
// deadline exceeded" in place of "connection refused".

// quorumNode makes o fail fast, as a node of a quorum should: a node that
// fails counts as failed for its round, and the majority decides without
// it, so retrying within the round only spends the node timeout. Each
// command is retried only if the URL sets max_retries.
func (c *Conn) quorumNode(o *redis.Options) {
	if !c.Query.Has("max_retries") {
		o.MaxRetries = -1
	}
}

// ClusterClient returns the options of a Cluster client with seed nodes
// hosts.
func (c *Conn) ClusterClient(hosts []string) (*redis.ClusterOptions, error) {
	o, err := redis.ParseClusterURL(c.goRedisURL(Cluster, hosts[0], "", url.Values{"addr": hosts[1:]}))
	if err != nil {
		return nil, c.wrap(err)
	}
	o.Username, o.Password = c.userPass()
	o.TLSConfig = c.tlsConfig("")
	if o.TLSConfig != nil {
		o.Dialer = tlsDialer(o.TLSConfig, dialTimeout(o.DialTimeout))
	}
	o.ContextTimeoutEnabled = true
	if !c.Query.Has("dialer_retries") {
		o.DialerRetries = 1
	}
	return o, nil
}

// FailoverClient returns the options of a client of master through the
// Sentinels at hosts, on database path (/DB or ""). The user information
// is the master's; sentinelAuth presents it to the Sentinels too.
func (c *Conn) FailoverClient(hosts []string, master, path string, sentinelAuth bool) (*redis.FailoverOptions, error) {
	if err := c.checkDB(path); err != nil {
		return nil, err
	}
	extra := url.Values{"master_name": {master}, "addr": hosts[1:]}
	o, err := redis.ParseFailoverURL(c.goRedisURL(Sentinel, hosts[0], path, extra))
	if err != nil {
		return nil, c.wrap(err)
	}
	o.Username, o.Password = c.userPass()
	if sentinelAuth {
		o.SentinelUsername, o.SentinelPassword = o.Username, o.Password
	}
	o.TLSConfig = c.tlsConfig("")
	if o.TLSConfig != nil {
		o.Dialer = tlsDialer(o.TLSConfig, dialTimeout(o.DialTimeout))
	}
	o.ContextTimeoutEnabled = true
	if !c.Query.Has("dialer_retries") {
		o.DialerRetries = 1
	}
	return o, nil
}

// hostname returns the host of HOST:PORT, without IPv6 brackets.
func hostname(hostport string) string {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return strings.Trim(hostport, "[]")
	}
	return h
}
