package conformance

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
)

// cases is the suite, in the order it runs: the basic contract first, then
// TTLs and fences, the optional capabilities, and last what package dlock
// builds on them.
var cases = []testCase{
	{"AcquireRelease",
		"Acquire grants a free key; Release with the holder's token frees it for others; releasing again returns ErrNotHeld.",
		acquireRelease},
	{"MutualExclusion",
		"While a key is held, an Acquire from another client with another token reports Acquired false and no error.",
		mutualExclusion},
	{"TryAcquireHeld",
		"An attempt on a held key is a busy result, not an error; through dlock, TryAcquire returns ErrNotAcquired.",
		tryAcquireHeld},
	{"ReleaseWrongToken",
		"Release with a token that does not hold the key returns ErrNotHeld and leaves the key to its holder.",
		releaseWrongToken},
	{"RefreshWrongToken",
		"Refresh with a token that does not hold the key returns ErrNotHeld and changes nothing.",
		refreshWrongToken},
	{"ExpiryFreesKey",
		"A lock that is not refreshed is freed when its TTL has passed, and not before.",
		expiryFreesKey},
	{"RefreshExtends",
		"Refresh by the holder resets the TTL: the lock outlives its first TTL.",
		refreshExtends},
	{"RefreshShorterTTL",
		"Refresh with a TTL shorter than the lock has left shortens it: the key is freed when the new TTL has passed, not at the old expiry.",
		refreshShorterTTL},
	{"RefreshAfterExpiryFails",
		"Once a lock has expired, Refresh and Release with its token return ErrNotHeld: an expired holder cannot bring its lock back.",
		refreshAfterExpiryFails},
	{"SameTokenIdempotent",
		"Acquire with the token that holds the key succeeds again with the same fence and resets the TTL, so retrying after a lost reply is safe.",
		sameTokenIdempotent},
	{"FencesIncrease",
		"Every grant's fence is greater than all earlier fences of the key, across holders, tokens and clients.",
		fencesIncrease},
	{"FencesIncreaseAfterExpiry",
		"A grant after the previous holder expired has a greater fence than that holder's.",
		fencesIncreaseAfterExpiry},
	{"FenceFloor",
		"A redlock.FloorAcquirer's grant with a floor has a fence of at least that floor, and later grants exceed it, with or without a floor.",
		fenceFloor},
	{"FenceFloorBelowLast",
		"A redlock.FloorAcquirer's grant with a floor below the key's last fence still exceeds that fence: a floor never makes fences go down.",
		fenceFloorBelowLast},
	{"ReleaseWrongTokenExpired",
		"Release with a token that never held the key returns ErrNotHeld also once the holder's lock has expired.",
		releaseWrongTokenExpired},
	{"HolderTTLReported",
		"A busy result reports the holder's remaining TTL, in (0, TTL], so that waiters can sleep exactly until it expires; a driver that reports zero does not know it, and the case is skipped.",
		holderTTLReported},
	{"Inspect",
		"A driver.Inspector reports the holder's owner, fence and remaining TTL, and reports a free key as free.",
		inspect},
	{"InspectAfterExpiry",
		"A driver.Inspector reports a key whose lock expired as free, not its stale holder.",
		inspectAfterExpiry},
	{"RefreshBatch",
		"A driver.BatchRefresher refreshes each item as Refresh would, with one result per item in order: nil or ErrNotHeld.",
		refreshBatch},
	{"RaiseFence",
		"A driver.FenceRaiser's RaiseFence makes the holder's fence the raised value and every later fence greater; a wrong token gets ErrNotHeld.",
		raiseFence},
	{"ReleaseWakesWaiter",
		"A driver.Notifier wakes subscribers on release: a dlock waiter gets the key promptly after the release, not at the holder's TTL.",
		releaseWakesWaiter},
	{"WaitersServedInTurn",
		"Each release wakes a waiter that still waits: waiters on several clients all get the key promptly in turn, even after an earlier waiter gave up.",
		waitersServedInTurn},
	{"HandoffInOrder",
		"A driver.Handoff hands a released key to its queued waiters first come, first served, one per release, with a granted Turn that names the waiter's last queued attempt and a fence above the previous holder's; the waiter's token holds the key.",
		handoffInOrder},
	{"HandoffFirstComeLongWait",
		"A driver.Handoff serves its queue by arrival, not by when each waiter would attempt again: a waiter queued first with a long Wait is handed the key before one queued later with a short Wait.",
		handoffFirstComeLongWait},
	{"HandoffLeaseFromAttempt",
		"A handed-off grant is the queued attempt's: the waiter's owner, the Turn's fence, and an expiry no earlier than the attempt's send time plus its TTL (the waiter counts its lease from then), and no later than the release plus that TTL.",
		handoffLeaseFromAttempt},
	{"HandoffSkipsCancelled",
		"A queued waiter whose handoff subscription was cancelled is passed over: it is not handed the key (Release with its token returns ErrNotHeld), gets no Turn, and the next waiter gets the key at once.",
		handoffSkipsCancelled},
	{"HandoffUnreadGrantReleased",
		"A grant to a waiter that cancels its subscription without reading it is released, by the waiter (it was in the channel) or by the driver (it came after cancel), and the next waiter gets the key at once, not after a TTL.",
		handoffUnreadGrantReleased},
	{"HandoffNotToAttemptZero",
		"A waiter queued with Attempt 0 is never handed the key: a release wakes it with a Turn that is not granted, and leaves the key free.",
		handoffNotToAttemptZero},
	{"ContendedNoOverlap",
		"Many goroutines over several clients taking one key with dlock's Do never overlap, all eventually get it, and fences increase.",
		contendedNoOverlap},
	{"CancelWhileWaiting",
		"Cancelling the context of a waiting dlock Acquire returns at once an error wrapping ErrNotAcquired and context.Canceled.",
		cancelWhileWaiting},
	{"UnknownOutcomeUndone",
		"An Acquire whose context ended may be applied or not, but an error wrapping ErrUnavailable means it was not; one that was applied is undone by a Release of its token; and dlock undoes an attempt whose reply was lost before TryAcquire or Acquire returns, so the key is free at once.",
		unknownOutcomeUndone},
	{"LeaseLostBeforeExpiry",
		"When a holder is cut off from the backend, its dlock lease is lost (Done closes) while the backend still holds the key, before anyone else can take it.",
		leaseLostBeforeExpiry},
	{"CloseStops",
		"Closing a dlock Locker ends its leases (Done closed, ErrClosed), frees their keys, and makes later calls return ErrClosed.",
		closeStops},
	{"UnsupportedMeansAbsent",
		"A capability method that answers errors.ErrUnsupported (a wrapping driver that cannot offer it) answers so every time, and dlock then works as over a driver without the capability: Holder reports ErrUnsupported, waiters get the key, renewal keeps leases.",
		unsupportedMeansAbsent},
}

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

// expiring returns the TTL of a lock whose expiry a case watches from the
// backend's side, and how long after the acquire was sent the lock is
// surely gone: shortTTL and half as much again, stretched to the
// backend's [Harness.TTLResolution].
func (s *suite) expiring() (ttl, gone time.Duration) {
	r := s.h.TTLResolution
	ttl = max(shortTTL, r)
	return ttl, ttl + max(ttl/2, r)
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

// spy watches the calls of a dlock Locker to its driver, so that a case
// can act at the right moment (when a waiter is subscribed and waiting)
// instead of sleeping and hoping. It forwards Subscribe to the wrapped
// driver, or fails it with errors.ErrUnsupported.
type spy struct {
	driver.Locker

	mu         sync.Mutex
	subscribed bool
	subErr     error
	waiting    chan struct{} // closed after a busy attempt that followed a subscription
	busy       chan struct{} // closed after the first busy attempt
}

func newSpy(d driver.Locker) *spy {
	return &spy{Locker: d, waiting: make(chan struct{}), busy: make(chan struct{})}
}

func (p *spy) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	res, err := p.Locker.Acquire(ctx, req)
	if err == nil && !res.Acquired {
		p.mu.Lock()
		closeOnce(p.busy)
		if p.subscribed {
			closeOnce(p.waiting)
		}
		p.mu.Unlock()
	}
	return res, err
}

func (p *spy) Subscribe(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	n, ok := p.Locker.(driver.Notifier)
	if !ok {
		return nil, nil, unsupported(p.Locker, "notify releases")
	}
	ch, cancel, err := n.Subscribe(ctx, key)
	p.mu.Lock()
	p.subscribed = err == nil
	if err != nil && p.subErr == nil {
		p.subErr = err
		closeOnce(p.waiting)
	}
	p.mu.Unlock()
	return ch, cancel, err
}

// awaitWaiting returns once the dlock waiter behind p has subscribed and
// found the key busy since; it skips the case if the driver cannot notify.
func (s *suite) awaitWaiting(p *spy) {
	s.Helper()
	select {
	case <-p.waiting:
	case <-time.After(slack):
		s.Fatalf("a dlock waiter did not subscribe and retry within %v", slack)
	}
	p.mu.Lock()
	subErr := p.subErr
	p.mu.Unlock()
	if errors.Is(subErr, errors.ErrUnsupported) {
		s.Skipf("Subscribe: %v", subErr)
	}
	if subErr != nil {
		s.Fatalf("Subscribe failed: %v", subErr)
	}
}

func closeOnce(c chan struct{}) {
	select {
	case <-c:
	default:
		close(c)
	}
}

// acquired is the outcome of a dlock Acquire run in a goroutine.
type acquired struct {
	lease *dlock.Lease
	err   error
	at    time.Time
}

// goAcquire starts l.Acquire in a goroutine; the case waits for its result
// before it ends.
func (s *suite) goAcquire(ctx context.Context, l *dlock.Locker, key string) <-chan acquired {
	c := make(chan acquired, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		lease, err := l.Acquire(ctx, key, nil)
		c <- acquired{lease, err, time.Now()}
	})
	s.Cleanup(wg.Wait)
	return c
}

func releaseWakesWaiter(s *suite) {
	holder := s.driver()
	wd := s.rawDriver()
	if _, ok := wd.(driver.Notifier); !ok {
		wd.Close()
		s.Skipf("%T is not a driver.Notifier", wd)
	}
	p := newSpy(wd)
	// A waiter that is not woken sleeps until the holder's TTL: the retry
	// strategy alone would wait an hour.
	l := s.locker(p, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: longTTL, Retry: dlock.ExponentialBackoff(time.Hour, time.Hour)}})
	key, a := s.key("k"), token()
	f := s.mustAcquire(holder, key, a, longTTL)

	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	got := s.goAcquire(ctx, l, key)
	s.awaitWaiting(p)

	released := time.Now()
	s.mustRelease(holder, key, a)
	select {
	case r := <-got:
		if r.err != nil {
			s.Fatalf("waiter's Acquire = %v", r.err)
		}
		defer r.lease.Release(s.ctx)
		if r.lease.Fence() <= f {
			s.Errorf("waiter's fence %d is not above the released holder's %d", r.lease.Fence(), f)
		}
	case <-time.After(slack):
		s.Errorf("a waiter was not woken %v after the release (the holder's TTL was %v): Release must wake subscribers",
			time.Since(released).Round(time.Millisecond), longTTL)
		cancel()
		if r := <-got; r.lease != nil {
			r.lease.Release(s.ctx)
		}
	}
}

func waitersServedInTurn(s *suite) {
	holder := s.driver()
	if _, ok := holder.(driver.Notifier); !ok {
		s.Skipf("%T is not a driver.Notifier", holder)
	}
	key, a := s.key("k"), token()
	s.mustAcquire(holder, key, a, longTTL)
	// Waiters that are not woken sleep until the holder's TTL: the retry
	// strategy alone would wait an hour.
	opts := &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: longTTL, Retry: dlock.ExponentialBackoff(time.Hour, time.Hour)}}
	wait := func(ctx context.Context) <-chan acquired {
		p := newSpy(s.rawDriver())
		got := s.goAcquire(ctx, s.locker(p, opts), key)
		s.awaitWaiting(p)
		return got
	}
	// The first waiter gives up; a driver that queues waiters must not
	// hand it the turn of those still waiting.
	ctx, cancel := context.WithCancel(s.ctx)
	gone := wait(ctx)
	var waiters []<-chan acquired
	for range 3 {
		waiters = append(waiters, wait(s.ctx))
	}
	cancel()
	if r := <-gone; r.err == nil {
		r.lease.Release(s.ctx)
		s.Fatalf("Acquire returned a lease after its context was cancelled")
	}

	s.mustRelease(holder, key, a)
	for n := range waiters {
		released := time.Now()
		cases := make([]reflect.SelectCase, 0, len(waiters)+1)
		for _, w := range waiters {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(w)})
		}
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(time.After(slack))})
		i, v, _ := reflect.Select(cases)
		if i == len(waiters) {
			s.Fatalf("%d of %d waiters got the key, then none %v after a release (the holder's TTL was %v): a release must wake a waiter that still waits",
				n, len(waiters), time.Since(released).Round(time.Millisecond), longTTL)
		}
		r := v.Interface().(acquired)
		if r.err != nil {
			s.Fatalf("waiter's Acquire = %v", r.err)
		}
		waiters[i] = nil // a nil channel is never ready
		if err := r.lease.Release(s.ctx); err != nil {
			s.Fatalf("Release = %v", err)
		}
	}
}

func contendedNoOverlap(s *suite) {
	const clients, perClient, rounds = 4, 2, 3
	key := s.key("k")
	opts := &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 10 * time.Second, Retry: dlock.ExponentialBackoff(50*time.Millisecond, 50*time.Millisecond)}}
	var inside, done atomic.Int32
	var last atomic.Uint64
	var any atomic.Bool
	var wg sync.WaitGroup
	for range clients {
		l := s.locker(s.rawDriver(), opts)
		for range perClient {
			wg.Go(func() {
				for range rounds {
					err := l.Do(s.ctx, key, nil, func(ctx context.Context, lease *dlock.Lease) error {
						if n := inside.Add(1); n != 1 {
							s.Errorf("%d holders of %q at once: mutual exclusion broken", n, key)
						}
						f := lease.Fence()
						if prev := last.Swap(f); any.Swap(true) && f <= prev {
							s.Errorf("fence %d granted after fence %d: fences must increase", f, prev)
						}
						sleep(ctx, time.Millisecond)
						inside.Add(-1)
						return nil
					})
					if err != nil {
						s.Errorf("Do: %v; every contender must get the key eventually", err)
						return
					}
					done.Add(1)
				}
			})
		}
	}
	wg.Wait()
	if n := done.Load(); n != clients*perClient*rounds {
		s.Errorf("%d of %d critical sections ran", n, clients*perClient*rounds)
	}
}

func cancelWhileWaiting(s *suite) {
	holder := s.driver()
	p := newSpy(s.rawDriver())
	l := s.locker(p, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: longTTL}})
	key, a := s.key("k"), token()
	s.mustAcquire(holder, key, a, longTTL)

	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	got := s.goAcquire(ctx, l, key)
	select {
	case <-p.busy:
	case <-time.After(slack):
		s.Fatalf("the dlock waiter made no attempt within %v", slack)
	}
	cancel()
	cancelled := time.Now()
	select {
	case r := <-got:
		if r.lease != nil {
			r.lease.Release(s.ctx)
			s.Fatalf("Acquire of a held key returned a lease after its context was cancelled")
		}
		if !errors.Is(r.err, dlock.ErrNotAcquired) || !errors.Is(r.err, context.Canceled) {
			s.Errorf("Acquire cancelled while waiting = %v; want an error wrapping ErrNotAcquired and context.Canceled", r.err)
		}
	case <-time.After(slack):
		s.Fatalf("Acquire still waiting %v after its context was cancelled", time.Since(cancelled).Round(time.Millisecond))
	}
	s.mustRelease(holder, key, a)
}

func leaseLostBeforeExpiry(s *suite) {
	if s.h.Partitioned == nil {
		s.Skipf("Harness.Partitioned is nil")
	}
	pd, cut := s.h.Partitioned(s.std())
	if pd == nil || cut == nil {
		s.Fatalf("Harness.Partitioned returned a nil driver or cut function")
	}
	// A large drift makes the gap between the local deadline and the
	// backend's expiry wide enough to observe on a loaded machine.
	const ttl, drift = time.Second, 400 * time.Millisecond
	l := s.locker(pd, &dlock.Options{ReleaseTimeout: 200 * time.Millisecond, LeaseOptions: dlock.LeaseOptions{TTL: ttl, Drift: drift}})
	other := s.driver()
	key := s.key("k")

	lease, err := l.Acquire(s.ctx, key, nil)
	if err != nil {
		s.Fatalf("Acquire of a free key = %v", err)
	}
	acquired := time.Now()
	cut()
	select {
	case <-lease.Context().Done():
	case <-time.After(ttl + slack):
		s.Fatalf("lease not lost %v after its client was cut off (TTL %v): renewal that cannot be confirmed must end the lease",
			time.Since(acquired).Round(time.Millisecond), ttl)
	}
	lost := time.Now()
	res := s.attempt(other, key, token(), longTTL)
	if res.Acquired {
		s.Errorf("the key could be taken by another client when the lease's Done closed (%v after Acquire returned, TTL %v): loss must be signalled before the backend frees the key",
			lost.Sub(acquired).Round(time.Millisecond), ttl)
	}
	if in, ok := other.(driver.Inspector); ok && !res.Acquired {
		if h, held, err := in.Inspect(s.ctx, key); err == nil && (!held || h.Fence != lease.Fence()) {
			s.Errorf("Inspect at loss = %+v, held %v; want the lost lease's fence %d still holding", h, held, lease.Fence())
		}
	}
	if err := lease.Err(); !errors.Is(err, dlock.ErrLeaseLost) {
		s.Errorf("lease.Err() after loss = %v; want ErrLeaseLost", err)
	}
	if d := lost.Sub(acquired); d < ttl-drift-ttl/3 {
		s.Errorf("lease lost %v after Acquire; want no earlier than its local deadline, about %v", d, ttl-drift)
	}
}

func closeStops(s *suite) {
	l := s.locker(s.rawDriver(), &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: longTTL}})
	other := s.driver()
	key := s.key("k")
	lease, err := l.Acquire(s.ctx, key, nil)
	if err != nil {
		s.Fatalf("Acquire of a free key = %v", err)
	}
	if err := l.Close(); err != nil {
		s.Errorf("Close = %v", err)
	}
	select {
	case <-lease.Context().Done():
	default:
		s.Fatalf("lease not ended when Close returned")
	}
	if err := lease.Err(); !errors.Is(err, dlock.ErrClosed) {
		s.Errorf("lease.Err() after Close = %v; want ErrClosed", err)
	}
	s.mustAcquire(other, key, token(), longTTL) // Close released it
	if _, err := l.TryAcquire(s.ctx, s.key("other"), nil); !errors.Is(err, dlock.ErrClosed) {
		s.Errorf("TryAcquire after Close = %v; want ErrClosed", err)
	}
	if _, err := l.Acquire(s.ctx, s.key("other"), nil); !errors.Is(err, dlock.ErrClosed) {
		s.Errorf("Acquire after Close = %v; want ErrClosed", err)
	}
	err = l.Do(s.ctx, s.key("other"), nil, func(context.Context, *dlock.Lease) error { return nil })
	if !errors.Is(err, dlock.ErrClosed) {
		s.Errorf("Do after Close = %v; want ErrClosed", err)
	}
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
