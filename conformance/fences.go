package conformance

import (
	"errors"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// This file checks fences: they increase across holders and expiries,
// floors never lower them, and RaiseFence raises them.

func fencesIncrease(s *suite) {
	d1, d2 := s.driver(), s.driver()
	key := s.key("k")
	var last uint64
	for i, d := range []driver.Locker{d1, d1, d2, d1} {
		tok := token()
		f := s.mustAcquire(d, key, tok, longTTL)
		if i > 0 && f <= last {
			s.Errorf("grant %d has fence %d after fence %d: fences must increase", i+1, f, last)
		}
		last = f
		s.mustBeBusy(d2, key, "while held") // a busy attempt must not disturb fences
		s.mustRelease(d, key, tok)
	}
}

func fencesIncreaseAfterExpiry(s *suite) {
	d1, d2 := s.driver(), s.driver()
	key := s.key("k")
	sent := time.Now()
	f1 := s.mustAcquire(d1, key, token(), shortTTL)
	f2, _ := s.awaitFree(d2, key, token(), sent.Add(shortTTL+slack), "a lock must expire after its TTL")
	if f2 <= f1 {
		s.Errorf("fence %d granted after the holder with fence %d expired: fences must increase across expiry", f2, f1)
	}
}

func fenceFloor(s *suite) {
	d1, d2 := s.driver(), s.driver()
	key := s.key("k")
	tok := token()
	f0 := s.mustAcquire(d1, key, tok, longTTL)
	s.mustRelease(d1, key, tok)
	floor := f0 + 1_000_000
	var last uint64
	for i, f := range []uint64{floor, floor, 0} {
		d := []driver.Locker{d1, d2}[i%2]
		req := driver.Request{Key: key, Token: token(), TTL: longTTL, Owner: "conformance"}
		var res driver.Result
		var err error
		if f == 0 {
			res, err = d.Acquire(s.ctx, req)
		} else {
			res, err = s.acquireFloor(d, req, f)
		}
		if err != nil || !res.Acquired {
			s.Fatalf("Acquire of a free key with floor %d = %+v, %v; want it granted", f, res, err)
		}
		switch {
		case res.Fence < floor:
			s.Errorf("grant %d has fence %d below the floor %d", i+1, res.Fence, floor)
		case i > 0 && res.Fence <= last:
			s.Errorf("grant %d has fence %d after fence %d: fences must increase, floor or not", i+1, res.Fence, last)
		}
		last = res.Fence
		s.mustRelease(d, key, req.Token)
	}
}

func fenceFloorBelowLast(s *suite) {
	d1, d2 := s.driver(), s.driver()
	key := s.key("k")
	tok := token()
	f0 := s.mustAcquire(d1, key, tok, longTTL)
	s.mustRelease(d1, key, tok)
	floor := f0 + 1_000_000
	tok = token()
	res, err := s.acquireFloor(d1, driver.Request{Key: key, Token: tok, TTL: longTTL, Owner: "conformance"}, floor)
	if err != nil || !res.Acquired {
		s.Fatalf("AcquireFloor of a free key with floor %d = %+v, %v; want it granted", floor, res, err)
	}
	s.mustRelease(d1, key, tok)
	if res.Fence < floor {
		s.Fatalf("fence %d for floor %d from a redlock.FloorAcquirer: a driver that offers fence floors must honour them", res.Fence, floor)
	}
	last := res.Fence
	for i, low := range []uint64{1, f0, last - 1} {
		tok := token()
		res, err := s.acquireFloor(d2, driver.Request{Key: key, Token: tok, TTL: longTTL, Owner: "conformance"}, low)
		if err != nil || !res.Acquired {
			s.Fatalf("AcquireFloor of a free key with floor %d = %+v, %v; want it granted", low, res, err)
		}
		if res.Fence <= last {
			s.Errorf("grant %d with floor %d has fence %d after fence %d: a floor below the last fence must not make fences go down", i+1, low, res.Fence, last)
		}
		last = max(last, res.Fence)
		s.mustRelease(d2, key, tok)
	}
}

func raiseFence(s *suite) {
	d1, d2 := s.driver(), s.driver()
	fr, ok := d1.(driver.FenceRaiser)
	if !ok {
		s.Skipf("%T is not a driver.FenceRaiser", d1)
	}
	key, a := s.key("k"), token()
	f := s.mustAcquire(d1, key, a, longTTL)
	raised := f + 1_000_000
	err := fr.RaiseFence(s.ctx, key, token(), raised)
	if errors.Is(err, errors.ErrUnsupported) {
		s.Skipf("RaiseFence: %v", err)
	}
	if !errors.Is(err, driver.ErrNotHeld) {
		s.Errorf("RaiseFence with a wrong token = %v; want ErrNotHeld", err)
	}
	if err := fr.RaiseFence(s.ctx, s.key("free"), token(), raised); !errors.Is(err, driver.ErrNotHeld) {
		s.Errorf("RaiseFence of a free key = %v; want ErrNotHeld", err)
	}
	if err := fr.RaiseFence(s.ctx, key, a, raised); err != nil {
		s.Fatalf("RaiseFence by the holder = %v; want nil", err)
	}
	if res := s.attempt(d1, key, a, longTTL); !res.Acquired || res.Fence != raised {
		s.Errorf("holder's repeated Acquire after RaiseFence(%d) = %+v; want its fence to be the raised one", raised, res)
	}
	if in, ok := d2.(driver.Inspector); ok {
		h, held, err := in.Inspect(s.ctx, key)
		if err == nil && (!held || h.Fence != raised) {
			s.Errorf("Inspect after RaiseFence(%d) = %+v, held %v; want the raised fence", raised, h, held)
		}
	}
	s.mustRelease(d1, key, a)
	if f2 := s.mustAcquire(d2, key, token(), longTTL); f2 <= raised {
		s.Errorf("fence %d granted after RaiseFence(%d): later fences must exceed the raised one", f2, raised)
	}
}
