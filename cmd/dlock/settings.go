package main

import (
	"os"
	"strconv"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// leaseSettings are what the session's Locker uses, for the guardian's
// schedule and for messages: --ttl and --owner over the URL's parameters
// over dlock's defaults (TTL 15s, owner host:pid), as dlock.Open resolves
// them. renew and drift are 0 when derived from the TTL, and renew is
// negative when renewal is off (renew=-1).
type leaseSettings struct {
	ttl, renew, drift time.Duration
	owner             string
}

// settings returns the lease settings of the Locker that dlock.Open made
// from rawURL and b's flags. Open has checked the URL by then.
func (b *backendFlags) settings(rawURL string) leaseSettings {
	s := leaseSettings{ttl: 15 * time.Second}
	if _, q, err := driver.ParseURL(rawURL); err == nil {
		for _, p := range []struct {
			name string
			dst  *time.Duration
		}{{"ttl", &s.ttl}, {"renew", &s.renew}, {"drift", &s.drift}} {
			if d, err := time.ParseDuration(q.Get(p.name)); err == nil {
				*p.dst = d
			}
		}
		s.owner = q.Get("owner")
	}
	if b.ttl != 0 {
		s.ttl = b.ttl
	}
	if b.owner != "" {
		s.owner = b.owner
	}
	if s.owner == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "unknown"
		}
		s.owner = host + ":" + strconv.Itoa(os.Getpid())
	}
	return s
}
