package conformance

import (
	"errors"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// This file checks driver.Inspector.

func inspect(s *suite) {
	d1, d2 := s.driver(), s.driver()
	in, ok := d2.(driver.Inspector)
	if !ok {
		s.Skipf("%T is not a driver.Inspector", d2)
	}
	key, a, owner := s.key("k"), token(), "conformance-owner-"+token()[:6]
	const ttl = 10 * time.Second

	_, held, err := in.Inspect(s.ctx, key)
	if errors.Is(err, errors.ErrUnsupported) {
		s.Skipf("Inspect: %v", err)
	}
	if err != nil || held {
		s.Fatalf("Inspect of a never-used key = held %v, %v; want free", held, err)
	}
	before := time.Now()
	res, err := d1.Acquire(s.ctx, driver.Request{Key: key, Token: a, TTL: ttl, Owner: owner})
	if err != nil || !res.Acquired {
		s.Fatalf("Acquire of a free key = %+v, %v", res, err)
	}
	h, held, err := in.Inspect(s.ctx, key)
	// Since is by the backend's clock: allow for skew between it and ours.
	const skew = 5 * time.Second
	switch {
	case err != nil || !held:
		s.Errorf("Inspect of a held key = held %v, %v; want held", held, err)
	case h.Owner != owner || h.Fence != res.Fence || h.TTL <= 0 || h.TTL > ttl:
		s.Errorf("Inspect = %+v; want owner %q, fence %d, TTL in (0, %v]", h, owner, res.Fence, ttl)
	case !h.Since.IsZero() && (h.Since.Before(before.Add(-skew)) || h.Since.After(time.Now().Add(skew))):
		s.Errorf("Inspect Since = %v; want the time of the acquire, about %v (or zero if unknown)", h.Since, before)
	}
	s.mustRelease(d1, key, a)
	if _, held, err := in.Inspect(s.ctx, key); err != nil || held {
		s.Errorf("Inspect after Release = held %v, %v; want free", held, err)
	}
}

func inspectAfterExpiry(s *suite) {
	d1, d2 := s.driver(), s.driver()
	in, ok := d2.(driver.Inspector)
	if !ok {
		s.Skipf("%T is not a driver.Inspector", d2)
	}
	key := s.key("k")
	ttl, gone := s.expiring()
	sent := time.Now()
	s.mustAcquire(d1, key, token(), ttl)
	_, held, err := in.Inspect(s.ctx, key)
	if errors.Is(err, errors.ErrUnsupported) {
		s.Skipf("Inspect: %v", err)
	}
	if err != nil || !held {
		s.Fatalf("Inspect of a held key = held %v, %v; want held", held, err)
	}
	sleepUntil(s.ctx, sent.Add(gone))
	if h, held, err := in.Inspect(s.ctx, key); err != nil || held {
		s.Errorf("Inspect %v after a lock with TTL %v was taken = %+v, held %v, %v; want free: an expired holder must not be reported",
			time.Since(sent).Round(time.Millisecond), ttl, h, held, err)
	}
}
