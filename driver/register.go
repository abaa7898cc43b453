package driver

import (
	"context"
	"net/url"
	"slices"
	"sync"
)

// OpenFunc opens a driver for a URL whose scheme it registered.
// dlock.Open has parsed the URL strictly ([ParseURL]). Its query carries
// the driver's own parameters and the common ones ([CommonParams]: ttl,
// renew, drift, owner, fencing) with the values the Locker uses, so a driver that
// needs one reads the same setting. It must reject parameters it does not
// know ([UnknownParams]) and print URLs only with [Redacted].
type OpenFunc func(ctx context.Context, u *url.URL) (Locker, error)

var registry struct {
	sync.RWMutex
	m map[string]OpenFunc
}

// Register makes a driver available to dlock.Open under scheme. Driver
// packages call it from init, for the Scheme constant they export. It
// panics if scheme is registered twice or open is nil, as both are
// programming errors found at start-up.
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

// Lookup returns the OpenFunc registered for scheme; dlock.Open uses it.
func Lookup(scheme string) (OpenFunc, bool) {
	registry.RLock()
	defer registry.RUnlock()
	open, ok := registry.m[scheme]
	return open, ok
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
