package conformance

import (
	"errors"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// This file checks TTLs: expiry, refresh, and the holder TTL a busy
// result reports.

// expiring returns the TTL of a lock whose expiry a case watches from the
// backend's side, and how long after the acquire was sent the lock is
// surely gone: shortTTL and half as much again, stretched to the
// backend's [Harness.TTLResolution].
func (s *suite) expiring() (ttl, gone time.Duration) {
	r := s.h.TTLResolution
	ttl = max(shortTTL, r)
	return ttl, ttl + max(ttl/2, r)
}

func expiryFreesKey(s *suite) {
	d1, d2 := s.driver(), s.driver()
	key := s.key("k")
	sent := time.Now()
	s.mustAcquire(d1, key, token(), shortTTL)
	s.mustBeBusy(d2, key, "just after it was taken")
	_, freed := s.awaitFree(d2, key, token(), sent.Add(shortTTL+slack),
		"a lock must expire after its TTL ("+shortTTL.String()+")")
	// The key was freed at the backend before the reply came, and taken no
	// earlier than the first request was sent.
	if d := freed.Sub(sent); d < shortTTL*9/10 {
		s.Errorf("key freed %v after it was taken with TTL %v: a lock must not expire early", d, shortTTL)
	}
}

func refreshExtends(s *suite) {
	d1, d2 := s.driver(), s.driver()
	key, a := s.key("k"), token()
	sent := time.Now()
	s.mustAcquire(d1, key, a, shortTTL)
	if err := d1.Refresh(s.ctx, key, a, longTTL); err != nil {
		s.Fatalf("holder's Refresh = %v; want nil", err)
	}
	sleepUntil(s.ctx, sent.Add(shortTTL+shortTTL/2))
	res := s.mustBeBusy(d2, key, "it expired at its first TTL though refreshed with a longer one")
	if res.HolderTTL > longTTL {
		s.Errorf("HolderTTL after Refresh = %v; want at most the refreshed TTL %v", res.HolderTTL, longTTL)
	}
	s.mustRelease(d1, key, a)
}

func refreshShorterTTL(s *suite) {
	d1, d2 := s.driver(), s.driver()
	key, a := s.key("k"), token()
	s.mustAcquire(d1, key, a, longTTL)
	sent := time.Now()
	if err := d1.Refresh(s.ctx, key, a, shortTTL); err != nil {
		s.Fatalf("holder's Refresh to a shorter TTL = %v; want nil", err)
	}
	s.awaitFree(d2, key, token(), sent.Add(shortTTL+slack),
		"a Refresh to "+shortTTL.String()+" must shorten a lock taken for "+longTTL.String())
}

func refreshAfterExpiryFails(s *suite) {
	d := s.driver()
	key, a := s.key("k"), token()
	ttl, gone := s.expiring()
	sent := time.Now()
	s.mustAcquire(d, key, a, ttl)
	sleepUntil(s.ctx, sent.Add(gone))
	if err := d.Refresh(s.ctx, key, a, longTTL); !errors.Is(err, driver.ErrNotHeld) {
		s.Errorf("Refresh %v after Acquire with TTL %v = %v; want ErrNotHeld: an expired lock must stay expired",
			time.Since(sent).Round(time.Millisecond), ttl, err)
	}
	if err := d.Release(s.ctx, key, a); !errors.Is(err, driver.ErrNotHeld) {
		s.Errorf("Release %v after Acquire with TTL %v = %v; want ErrNotHeld",
			time.Since(sent).Round(time.Millisecond), ttl, err)
	}
}

func holderTTLReported(s *suite) {
	d1, d2 := s.driver(), s.driver()
	key, a := s.key("k"), token()
	const ttl = 10 * time.Second
	s.mustAcquire(d1, key, a, ttl)
	res := s.mustBeBusy(d2, key, "while held")
	s.mustRelease(d1, key, a)
	if res.HolderTTL == 0 {
		s.Skipf("busy result's HolderTTL is zero: the driver does not know the holder's expiry, and waiters fall back to their backoff")
	}
	if res.HolderTTL < 0 || res.HolderTTL > ttl {
		s.Errorf("busy result's HolderTTL = %v; want in (0, %v], or zero if unknown", res.HolderTTL, ttl)
	}
}

func refreshBatch(s *suite) {
	d1, d2 := s.driver(), s.driver()
	br, ok := d1.(driver.BatchRefresher)
	if !ok {
		s.Skipf("%T is not a driver.BatchRefresher", d1)
	}
	k1, k2, k3 := s.key("k1"), s.key("k2"), s.key("k3")
	a, b := token(), token()
	sent := time.Now()
	s.mustAcquire(d1, k1, a, shortTTL)
	s.mustAcquire(d1, k2, b, longTTL)
	if errs := br.RefreshBatch(s.ctx, nil); len(errs) != 0 {
		s.Errorf("RefreshBatch of no requests = %v; want no results", errs)
	}
	errs := br.RefreshBatch(s.ctx, []driver.RefreshRequest{
		{Key: k1, Token: a, TTL: longTTL},
		{Key: k2, Token: token(), TTL: longTTL},
		{Key: k3, Token: token(), TTL: longTTL},
	})
	if len(errs) == 3 && errors.Is(errs[0], errors.ErrUnsupported) {
		s.Skipf("RefreshBatch: %v", errs[0])
	}
	if len(errs) != 3 || errs[0] != nil || !errors.Is(errs[1], driver.ErrNotHeld) || !errors.Is(errs[2], driver.ErrNotHeld) {
		s.Fatalf("RefreshBatch(holder's token, wrong token, free key) = %v; want [nil, ErrNotHeld, ErrNotHeld]", errs)
	}
	if err := d1.Refresh(s.ctx, k2, b, longTTL); err != nil {
		s.Errorf("holder's Refresh after a wrong-token batch item = %v; the key must still be the holder's", err)
	}
	s.mustAcquire(d2, k3, token(), longTTL) // the failed item did not take k3
	sleepUntil(s.ctx, sent.Add(shortTTL+shortTTL/2))
	s.mustBeBusy(d2, k1, "it expired at its first TTL though refreshed in a batch")
}
