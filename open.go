package dlock

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// OpenFunc opens a driver for a URL whose scheme it registered. The query
// holds only the driver's own parameters: [Open] has removed the common ones
// (ttl, renew, drift, owner) already. It must reject parameters it does not
// know, and print URLs only with [Redacted].
type OpenFunc func(ctx context.Context, u *url.URL) (driver.Locker, error)

var registry struct {
	sync.RWMutex
	m map[string]OpenFunc
}

// Register makes a driver available to [Open] under scheme. Driver packages
// call it from init. It panics if scheme is registered twice or open is nil,
// as both are programming errors found at start-up.
func Register(scheme string, open OpenFunc) {
	registry.Lock()
	defer registry.Unlock()
	if open == nil {
		panic("dlock: Register " + scheme + " with a nil OpenFunc")
	}
	if _, dup := registry.m[scheme]; dup {
		panic("dlock: Register called twice for scheme " + scheme)
	}
	if registry.m == nil {
		registry.m = make(map[string]OpenFunc)
	}
	registry.m[scheme] = open
}

// Schemes returns the registered URL schemes, sorted.
func Schemes() []string {
	registry.RLock()
	defer registry.RUnlock()
	s := make([]string, 0, len(registry.m))
	for k := range registry.m {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}

// Open returns a Locker for a URL such as "mem://", "redis://host:6379/0"
// or "redlock://h1:6379,h2:6379,h3:6379". The driver for the scheme must be
// linked in, usually by importing its package for side effects.
//
// These query parameters apply to every scheme and set the Locker's
// [Options]: ttl, renew and drift (Go durations such as "30s"; renew=-1
// disables automatic renewal) and owner. Other parameters belong to the
// driver; unknown ones are rejected.
func Open(ctx context.Context, rawURL string) (*Locker, error) {
	return OpenOptions(ctx, rawURL, nil)
}

// OpenOptions is [Open] with options that a URL cannot carry, such as an
// Observer or a Logger. Parameters in the URL take precedence over opts.
func OpenOptions(ctx context.Context, rawURL string, opts *Options) (*Locker, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse's error repeats the input, password included.
		return nil, fmt.Errorf("%w: malformed URL %q", ErrInvalid, redactRaw(rawURL))
	}
	registry.RLock()
	open, ok := registry.m[u.Scheme]
	registry.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: unknown URL scheme %q in %s; known schemes: %s (forgotten import?)",
			ErrInvalid, u.Scheme, Redacted(u), strings.Join(Schemes(), ", "))
	}
	opts, err = commonOptions(u, opts)
	if err != nil {
		return nil, err
	}
	if _, err := opts.resolve(nil); err != nil {
		return nil, fmt.Errorf("%s: %w", Redacted(u), err)
	}
	d, err := open(ctx, u)
	if err != nil {
		return nil, err
	}
	return New(d, opts), nil
}

// commonOptions removes the common parameters from u's query and returns
// them over a copy of base.
func commonOptions(u *url.URL, base *Options) (*Options, error) {
	q := u.Query()
	var o Options
	if base != nil {
		o = *base
	}
	for name, dst := range map[string]*time.Duration{"ttl": &o.TTL, "renew": &o.RenewInterval, "drift": &o.Drift} {
		v := q.Get(name)
		if v == "" {
			continue
		}
		d, err := time.ParseDuration(v)
		if err == nil && name == "renew" && d < 0 {
			d = -1
		}
		if err != nil || (d <= 0 && name != "renew") {
			return nil, fmt.Errorf("%w: %s=%q in %s is not a positive duration", ErrInvalid, name, v, Redacted(u))
		}
		*dst = d
		q.Del(name)
	}
	if v := q.Get("owner"); v != "" {
		o.Owner = v
	}
	q.Del("owner")
	u.RawQuery = q.Encode()
	return &o, nil
}

// redactRaw hides what looks like a password in a URL that did not parse.
func redactRaw(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return s
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}

// UnknownParams returns an error naming the query parameters of u that are
// not in known, or nil. Drivers call it from their OpenFunc.
func UnknownParams(u *url.URL, known ...string) error {
	var bad []string
	for k := range u.Query() {
		if !slices.Contains(known, k) {
			bad = append(bad, k)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad)
	return fmt.Errorf("%w: unknown URL parameter %s in %s", ErrInvalid, strings.Join(bad, ", "), Redacted(u))
}

// Redacted returns u as text with every secret replaced by "xxxxx": the
// password in the user information, as url.URL.Redacted does, and the value
// of any query parameter whose name mentions a password, secret or token.
// Drivers print URLs only through it.
func Redacted(u *url.URL) string {
	if u == nil {
		return ""
	}
	r := *u
	if r.RawQuery != "" {
		q := r.Query()
		changed := false
		for name, vals := range q {
			n := strings.ToLower(name)
			if strings.Contains(n, "pass") || strings.Contains(n, "secret") || strings.Contains(n, "token") {
				for i := range vals {
					vals[i] = "xxxxx"
				}
				changed = true
			}
		}
		if changed {
			r.RawQuery = q.Encode()
		}
	}
	return r.Redacted()
}
