package conformance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
)

// This file checks the basic contract of driver.Locker: grants, busy
// results, tokens, retries and unknown outcomes.

func acquireRelease(s *suite) {
	d1, d2 := s.driver(), s.driver()
	key, a, b := s.key("k"), token(), token()
	s.mustAcquire(d1, key, a, longTTL)
	s.mustRelease(d1, key, a)
	if err := d1.Release(s.ctx, key, a); !errors.Is(err, driver.ErrNotHeld) {
		s.Errorf("second Release = %v; want an error wrapping ErrNotHeld", err)
	}
	if res := s.attempt(d2, key, b, longTTL); !res.Acquired {
		s.Fatalf("Acquire after Release = %+v; Release must free the key", res)
	}
	s.mustRelease(d2, key, b)
}

func mutualExclusion(s *suite) {
	d1, d2 := s.driver(), s.driver()
	key, a, b := s.key("k"), token(), token()
	s.mustAcquire(d1, key, a, longTTL)
	if res := s.attempt(d2, key, b, longTTL); res.Acquired {
		s.Fatalf("a second client acquired a held key: mutual exclusion broken")
	}
	if err := d2.Release(s.ctx, key, b); !errors.Is(err, driver.ErrNotHeld) {
		s.Errorf("Release by the loser = %v; want ErrNotHeld", err)
	}
	s.mustRelease(d1, key, a)
	s.mustAcquire(d2, key, b, longTTL)
	if res := s.attempt(d1, key, a, longTTL); res.Acquired {
		s.Errorf("the first client took the key back from the second: mutual exclusion broken")
	}
	s.mustRelease(d2, key, b)
}

func tryAcquireHeld(s *suite) {
	d := s.driver()
	key, a := s.key("k"), token()
	s.mustAcquire(d, key, a, longTTL)
	res, err := d.Acquire(s.ctx, driver.Request{Key: key, Token: token(), TTL: longTTL, Owner: "conformance"})
	if err != nil || res.Acquired {
		s.Errorf("Acquire of a held key = %+v, %v; want Acquired false and no error", res, err)
	}
	l := s.locker(s.rawDriver(), nil)
	start := time.Now()
	lease, err := l.TryAcquire(s.ctx, key, nil)
	if !errors.Is(err, dlock.ErrNotAcquired) {
		s.Errorf("dlock TryAcquire of a held key = %v, %v; want ErrNotAcquired", lease, err)
	}
	if d := time.Since(start); d > slack {
		s.Errorf("dlock TryAcquire of a held key took %v; it must make one attempt and not wait", d)
	}
	s.mustRelease(d, key, a)
}

func releaseWrongToken(s *suite) {
	d1, d2 := s.driver(), s.driver()
	key, a := s.key("k"), token()
	if err := d1.Release(s.ctx, s.key("free"), token()); !errors.Is(err, driver.ErrNotHeld) {
		s.Errorf("Release of a free key = %v; want ErrNotHeld", err)
	}
	s.mustAcquire(d1, key, a, longTTL)
	if err := d2.Release(s.ctx, key, token()); !errors.Is(err, driver.ErrNotHeld) {
		s.Errorf("Release with a wrong token = %v; want ErrNotHeld: only the token's holder may release", err)
	}
	s.mustBeBusy(d2, key, "a Release with a wrong token freed it")
	if err := d1.Refresh(s.ctx, key, a, longTTL); err != nil {
		s.Errorf("holder's Refresh after someone's wrong-token Release = %v; the key must still be the holder's", err)
	}
	s.mustRelease(d1, key, a)
}

func refreshWrongToken(s *suite) {
	d1, d2 := s.driver(), s.driver()
	key, a := s.key("k"), token()
	if err := d1.Refresh(s.ctx, s.key("free"), token(), longTTL); !errors.Is(err, driver.ErrNotHeld) {
		s.Errorf("Refresh of a free key = %v; want ErrNotHeld", err)
	}
	s.mustAcquire(d1, key, a, longTTL)
	if err := d2.Refresh(s.ctx, key, token(), longTTL); !errors.Is(err, driver.ErrNotHeld) {
		s.Errorf("Refresh with a wrong token = %v; want ErrNotHeld: only the token's holder may refresh", err)
	}
	s.mustBeBusy(d2, key, "it was taken by a Refresh with a wrong token")
	s.mustRelease(d1, key, a)
}

func releaseWrongTokenExpired(s *suite) {
	d1, d2 := s.driver(), s.driver()
	key := s.key("k")
	sent := time.Now()
	s.mustAcquire(d1, key, token(), shortTTL)
	sleepUntil(s.ctx, sent.Add(shortTTL+shortTTL/2))
	if err := d2.Release(s.ctx, key, token()); !errors.Is(err, driver.ErrNotHeld) {
		s.Errorf("Release with a wrong token after the holder expired = %v; want ErrNotHeld", err)
	}
}

func sameTokenIdempotent(s *suite) {
	d1, d2 := s.driver(), s.driver()
	key, a := s.key("k"), token()
	sent := time.Now()
	f := s.mustAcquire(d1, key, a, shortTTL)
	for i, d := range []driver.Locker{d1, d2} {
		res := s.attempt(d, key, a, longTTL)
		if !res.Acquired || res.Fence != f {
			s.Errorf("repeated Acquire with the holder's token (client %d) = %+v; want Acquired with the same fence %d", i+1, res, f)
		}
	}
	sleepUntil(s.ctx, sent.Add(shortTTL+shortTTL/2))
	s.mustBeBusy(d2, key, "it expired at its first TTL though re-acquired by its holder with a longer one: a repeated Acquire must reset the TTL")
	s.mustRelease(d1, key, a)
}

// lostReply applies an Acquire and then reports an unknown outcome, as a
// driver whose reply was lost does.
type lostReply struct{ driver.Locker }

func (d lostReply) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	res, err := d.Locker.Acquire(ctx, req)
	if err != nil {
		return res, err
	}
	return driver.Result{}, fmt.Errorf("conformance: reply lost (injected fault): %w", driver.ErrOutcomeUnknown)
}

func unknownOutcomeUndone(s *suite) {
	d, other := s.driver(), s.driver()
	key := s.key("k")

	// The driver: an ended context.
	ctx, cancel := context.WithCancel(s.ctx)
	cancel()
	tok := token()
	res, err := d.Acquire(ctx, driver.Request{Key: key, Token: tok, TTL: longTTL, Owner: "conformance"})
	switch {
	case err == nil && res.Acquired:
		s.mustRelease(d, key, tok)
	case errors.Is(err, driver.ErrUnavailable):
		// Not applied, it says: no Release. The check below tells.
	case err != nil:
		// Applied or not: a Release of its token undoes it.
		d.Release(s.ctx, key, tok)
	}
	if res := s.attempt(other, key, tok+"-other", longTTL); !res.Acquired {
		if errors.Is(err, driver.ErrUnavailable) {
			s.Fatalf("key held after an Acquire with an ended context returned %v: ErrUnavailable must mean that the attempt was not applied", err)
		}
		s.Fatalf("key held after an Acquire with an ended context returned (%v) and its token was released: a Release must undo an attempt whose outcome was unknown", err)
	}
	s.mustRelease(other, key, tok+"-other")

	// dlock: a grant whose reply was lost.
	l := s.locker(lostReply{s.rawDriver()}, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: longTTL, Retry: dlock.ExponentialBackoff(time.Hour, time.Hour)}})
	if lease, err := l.TryAcquire(s.ctx, key, nil); err == nil {
		lease.Release(s.ctx)
		s.Fatalf("dlock TryAcquire returned a lease over a driver that lost every reply")
	}
	if res := s.attempt(other, key, token(), longTTL); !res.Acquired {
		s.Fatalf("key held right after dlock TryAcquire failed with an unknown outcome: the attempt must be undone before TryAcquire returns")
	}
}
