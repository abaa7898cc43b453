package dlock

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// Open returns a Locker for a URL such as "mem://", "redis://host:6379/0"
// or "redlock://h1:6379,h2:6379,h3:6379". The driver for the scheme must be
// linked in, usually by importing its package for side effects
// ([driver.Schemes] lists those that are).
//
// These query parameters apply to every scheme and set the Locker's
// default [LeaseOptions]: ttl, renew and drift (Go durations such as
// "30s"; renew=-1 disables automatic renewal), owner, and fencing
// (fencing=false sets DisableFencing). Other parameters belong to the
// driver; unknown ones are rejected. opts may be nil; it carries what a
// URL cannot (an Observer, a Logger), and a non-zero field of it overrides
// the URL's parameter.
//
// The URL is parsed strictly, so that it never silently means something
// other than its text: it must start with SCHEME://, name its host where
// the scheme has one, escape '@', '/', '?' and '#' in a password (as %40,
// %2F, %3F, %23), and separate parameters with '&' only. Errors show the
// URL as [driver.RedactURL] does: without user name, password, or the
// value of any parameter that is not a documented setting.
func Open(ctx context.Context, rawURL string, opts *Options) (*Locker, error) {
	u, q, err := driver.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	open, ok := driver.Lookup(u.Scheme)
	if !ok {
		return nil, unknownScheme(u)
	}
	o, err := urlOptions(q, driver.Redacted(u))
	if err != nil {
		return nil, err
	}
	o = o.overriddenBy(opts)
	if _, err := o.resolve(); err != nil {
		return nil, fmt.Errorf("%s: %w", driver.Redacted(u), err)
	}
	// The driver sees the settings the Locker uses, not the URL's.
	setParam(q, "ttl", o.TTL)
	setParam(q, "renew", o.RenewInterval)
	setParam(q, "drift", o.Drift)
	if q.Del("owner"); o.Owner != "" {
		q.Set("owner", o.Owner)
	}
	if q.Del("fencing"); o.DisableFencing {
		q.Set("fencing", "false")
	}
	u.RawQuery = q.Encode()
	d, err := open(ctx, u)
	if err != nil {
		return nil, err
	}
	return New(d, o), nil
}

// setParam sets a duration parameter of q to d, or removes it when d is 0.
func setParam(q url.Values, name string, d time.Duration) {
	q.Del(name)
	if d != 0 {
		q.Set(name, d.String())
	}
}

// urlOptions reads the common parameters of a URL's query.
func urlOptions(q url.Values, red string) (*Options, error) {
	var o Options
	for _, p := range []struct {
		name string
		dst  *time.Duration
	}{{"ttl", &o.TTL}, {"renew", &o.RenewInterval}, {"drift", &o.Drift}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		d, err := time.ParseDuration(v)
		if err == nil && p.name == "renew" && d < 0 {
			d = -1
		}
		if err != nil || (d <= 0 && p.name != "renew") {
			return nil, fmt.Errorf("%w: %s=%q in %s is not a positive duration", ErrInvalid, p.name, v, red)
		}
		*p.dst = d
	}
	o.Owner = q.Get("owner")
	// The spellings of every boolean parameter of the drivers' URLs.
	switch v := q.Get("fencing"); v {
	case "", "true", "1":
	case "false", "0":
		o.DisableFencing = true
	default:
		return nil, fmt.Errorf("%w: fencing=%q in %s is not true or false", ErrInvalid, v, red)
	}
	return &o, nil
}

// overriddenBy returns a copy of o with every non-zero field of x.
func (o *Options) overriddenBy(x *Options) *Options {
	r := *o
	if x == nil {
		return &r
	}
	y := *x
	if y.TTL == 0 {
		y.TTL = r.TTL
	}
	if y.RenewInterval == 0 {
		y.RenewInterval = r.RenewInterval
	}
	if y.Drift == 0 {
		y.Drift = r.Drift
	}
	if y.Owner == "" {
		y.Owner = r.Owner
	}
	y.DisableFencing = y.DisableFencing || r.DisableFencing
	return &y
}

// schemePackages names the package of this module that registers each
// scheme, for the error of a scheme not registered.
var schemePackages = map[string]string{
	"mem":             "github.com/dlock-go/dlock/memdriver",
	"redis":           "github.com/dlock-go/dlock/redisdriver",
	"rediss":          "github.com/dlock-go/dlock/redisdriver",
	"redis+cluster":   "github.com/dlock-go/dlock/redisdriver",
	"rediss+cluster":  "github.com/dlock-go/dlock/redisdriver",
	"redis+sentinel":  "github.com/dlock-go/dlock/redisdriver",
	"rediss+sentinel": "github.com/dlock-go/dlock/redisdriver",
	"redlock":         "github.com/dlock-go/dlock/redlock",
	"redlocks":        "github.com/dlock-go/dlock/redlock",
}

// unknownScheme is the error of a URL whose scheme no imported driver
// registered: it names the package to import when it is one of this
// module's, and lists the schemes registered.
func unknownScheme(u *url.URL) error {
	known := "none"
	if s := driver.Schemes(); len(s) > 0 {
		known = strings.Join(s, ", ")
	}
	if pkg, ok := schemePackages[strings.ToLower(u.Scheme)]; ok {
		return fmt.Errorf("%w: URL scheme %q in %s is not registered: import _ %q, which registers it (known schemes: %s)",
			ErrInvalid, u.Scheme, driver.Redacted(u), pkg, known)
	}
	return fmt.Errorf("%w: unknown URL scheme %q in %s; known schemes: %s (forgotten import?)",
		ErrInvalid, u.Scheme, driver.Redacted(u), known)
}
