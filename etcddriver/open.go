package etcddriver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dlock-go/dlock/driver"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// URL schemes registered with [dlock.Open].
const (
	Scheme    = "etcd"  // plain connections
	SchemeTLS = "etcds" // TLS
)

// DefaultPort is the port of a host given without one.
const DefaultPort = "2379"

// URL query parameters of the etcd schemes, besides the common ones
// (ttl, renew, drift, owner, fencing).
const (
	ParamDialTimeout   = "dial_timeout"
	ParamCallTimeout   = "call_timeout"
	ParamSkipVerify    = "skip_verify"     // etcds only
	ParamTLSServerName = "tls_server_name" // etcds only
	ParamCAFile        = "ca_file"         // etcds only
	ParamCertFile      = "cert_file"       // etcds only
	ParamKeyFile       = "key_file"        // etcds only
)

// tlsParams are the parameters that only TLS schemes accept.
var tlsParams = []string{ParamSkipVerify, ParamTLSServerName, ParamCAFile, ParamCertFile, ParamKeyFile}

// defaultDialTimeout bounds the first connection of a client Open makes.
const defaultDialTimeout = 5 * time.Second

func init() {
	driver.Register(Scheme, Open)
	driver.Register(SchemeTLS, Open)
	driver.PublicParams(append([]string{ParamDialTimeout, ParamCallTimeout}, tlsParams...)...)
}

// Open opens a driver for an etcd:// or etcds:// URL; see the package
// documentation for the form and parameters. [dlock.Open] calls it with
// the URL parsed strictly.
//
// Open makes a client, checks it with one round trip within ctx (so that
// a wrong address, password or permission fails here), and returns a
// driver that closes the client on Close.
func Open(ctx context.Context, u *url.URL) (driver.Locker, error) {
	cfg, opts, err := clientConfig(u)
	if err != nil {
		return nil, err
	}
	red := driver.Redacted(u)
	scrub := func(err error) error { return driver.Scrub(err, driver.Password(u)) }
	client, err := clientv3.New(cfg)
	if err != nil {
		if !errors.Is(err, rpctypes.ErrAuthFailed) {
			err = fmt.Errorf("%w: %w", driver.ErrUnavailable, err)
		}
		return nil, scrub(fmt.Errorf("etcddriver: open %s: %w", red, err))
	}
	d := newLocker(client, opts, true)
	if err := d.checkAccess(ctx); err != nil {
		d.Close()
		return nil, scrub(fmt.Errorf("etcddriver: open %s: %w", red, err))
	}
	return d, nil
}

// checkAccess runs a transaction that reads a key under the prefix and,
// under a condition that never holds, writes it: etcd checks the
// permissions of every operation of a transaction, run or not, so a user
// who may not write the prefix is refused here, and nothing is written.
func (d *locker) checkAccess(ctx context.Context) error {
	k := d.prefix + "open-check"
	_, err := d.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "<", 0)).
		Then(clientv3.OpPut(k, "")).
		Else(clientv3.OpGet(k)).
		Commit()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		return fmt.Errorf("the etcd user may not read and write keys under %q, which the driver needs (see Permissions in the package docs): %w", d.prefix, err)
	case errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrAuthNotEnabled):
		return err
	}
	return fmt.Errorf("%w: %w", driver.ErrUnavailable, err)
}

// clientConfig returns the client configuration and driver options of u.
func clientConfig(u *url.URL) (clientv3.Config, *Options, error) {
	var cfg clientv3.Config
	red := driver.Redacted(u)
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", driver.ErrInvalid, red, fmt.Sprintf(format, args...))
	}
	useTLS := false
	switch u.Scheme {
	case Scheme:
	case SchemeTLS:
		useTLS = true
	default:
		return cfg, nil, bad("not an etcd scheme (want %s:// or %s://)", Scheme, SchemeTLS)
	}
	q, err := driver.Query(u)
	if err != nil {
		return cfg, nil, err
	}
	if !useTLS {
		for _, p := range tlsParams {
			if q.Has(p) {
				return cfg, nil, bad("%s applies to TLS connections only (%s://), and this URL has none", p, SchemeTLS)
			}
		}
	}
	if err := driver.UnknownParams(u, append([]string{ParamDialTimeout, ParamCallTimeout}, tlsParams...)...); err != nil {
		return cfg, nil, err
	}
	hosts, err := driver.HostList(u, DefaultPort)
	if err != nil {
		return cfg, nil, err
	}
	scheme := "http://"
	if useTLS {
		scheme = "https://"
	}
	for _, h := range hosts {
		cfg.Endpoints = append(cfg.Endpoints, scheme+h)
	}
	if u.User != nil {
		cfg.Username = u.User.Username()
		cfg.Password, _ = u.User.Password()
		if cfg.Username == "" {
			return cfg, nil, bad("a password without a user name; etcd authenticates users: etcd://USER:PASSWORD@HOST")
		}
	}
	opts := &Options{}
	cfg.DialTimeout = defaultDialTimeout
	for _, p := range []struct {
		name string
		to   *time.Duration
	}{{ParamDialTimeout, &cfg.DialTimeout}, {ParamCallTimeout, &opts.CallTimeout}} {
		if v := q.Get(p.name); v != "" {
			dt, err := time.ParseDuration(v)
			if err != nil || dt <= 0 {
				return cfg, nil, bad("%s must be a positive duration such as 5s", p.name)
			}
			*p.to = dt
		}
	}
	if useTLS {
		tc, err := tlsConfig(q, bad)
		if err != nil {
			return cfg, nil, err
		}
		cfg.TLS = tc
	}
	cfg.Logger = zap.NewNop()
	// Keep-alive pings drop the connection to a member that stopped
	// answering (a frozen process keeps its TCP connections open), so
	// that the client's balancer sends calls to the others: after 12s,
	// gRPC's least ping interval and a timeout of 2s.
	cfg.DialKeepAliveTime, cfg.DialKeepAliveTimeout = 10*time.Second, 2*time.Second
	opts.Prefix = strings.TrimPrefix(u.Path, "/")
	if opts.Prefix != "" && !strings.HasSuffix(opts.Prefix, "/") {
		opts.Prefix += "/"
	}
	return cfg, opts, nil
}

// tlsConfig returns the TLS configuration of the query q of an etcds URL.
func tlsConfig(q url.Values, bad func(string, ...any) error) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: q.Get(ParamTLSServerName)}
	if v := q.Get(ParamSkipVerify); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, bad("%s must be true or false", ParamSkipVerify)
		}
		tc.InsecureSkipVerify = b
	}
	if f := q.Get(ParamCAFile); f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, bad("%s: %v", ParamCAFile, errors.Unwrap(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, bad("%s holds no PEM certificate", ParamCAFile)
		}
		tc.RootCAs = pool
	}
	cert, key := q.Get(ParamCertFile), q.Get(ParamKeyFile)
	if (cert == "") != (key == "") {
		return nil, bad("%s and %s go together: a client certificate needs its key", ParamCertFile, ParamKeyFile)
	}
	if cert != "" {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, bad("client certificate: %v", err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc, nil
}
