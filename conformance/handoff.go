package conformance

import (
	"errors"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// The cases of [driver.Handoff]. They drive the driver directly, as a
// waiter would: subscribe, then make a busy attempt with Wait and Attempt.

// handoffWait is the Wait of the queued attempts: longer than any case.
const handoffWait = caseTimeout

// needHandoff returns d as a driver.Handoff, or skips the case.
func (s *suite) needHandoff(d driver.Locker) driver.Handoff {
	s.Helper()
	h, ok := d.(driver.Handoff)
	if !ok {
		s.Skipf("%T is not a driver.Handoff", d)
	}
	return h
}

// waiter is one queued handoff waiter of a case.
type waiter struct {
	d      driver.Locker
	h      driver.Handoff // d
	token  string
	owner  string
	turns  <-chan driver.Turn
	cancel func()
	sent   time.Time // when its last attempt was sent
}

// subscribe makes a waiter on d subscribed to key, not yet queued; it
// skips the case if d answers errors.ErrUnsupported.
func (s *suite) subscribe(d driver.Locker, key string) *waiter {
	s.Helper()
	h := s.needHandoff(d)
	w := &waiter{d: d, h: h, token: token(), owner: "conformance-waiter-" + token()[:6]}
	var err error
	w.turns, w.cancel, err = h.SubscribeHandoff(s.ctx, key, w.token)
	if errors.Is(err, errors.ErrUnsupported) {
		s.Skipf("SubscribeHandoff: %v", err)
	}
	if err != nil {
		s.Fatalf("SubscribeHandoff failed: %v", err)
	}
	var once bool
	cancel := w.cancel
	w.cancel = func() {
		if !once {
			once = true
			cancel()
		}
	}
	s.Cleanup(w.cancel)
	return w
}

// queue makes attempt n of w on key, with ttl, which must be busy.
func (s *suite) queue(w *waiter, key string, n uint64, ttl time.Duration) {
	s.Helper()
	s.queueWait(w, key, n, ttl, handoffWait)
}

// queueWait is queue with the attempt's Wait.
func (s *suite) queueWait(w *waiter, key string, n uint64, ttl, wait time.Duration) {
	s.Helper()
	w.sent = time.Now()
	res, err := w.h.AcquireQueued(s.ctx, driver.Request{Key: key, Token: w.token, TTL: ttl, Owner: w.owner}, driver.Queued{Wait: wait, Attempt: n})
	if err != nil {
		s.Fatalf("a waiter's AcquireQueued failed: %v", err)
	}
	if res.Acquired {
		s.Fatalf("a waiter's AcquireQueued of a held key = %+v; want busy", res)
	}
}

// waitQueued makes a waiter on a new client, subscribed and queued on key
// with attempt n.
func (s *suite) waitQueued(key string, n uint64, ttl time.Duration) *waiter {
	s.Helper()
	w := s.subscribe(s.driver(), key)
	s.queue(w, key, n, ttl)
	return w
}

// awaitTurn returns w's next Turn, or fails the case after slack.
func (s *suite) awaitTurn(w *waiter, why string) driver.Turn {
	s.Helper()
	select {
	case t := <-w.turns:
		return t
	case <-time.After(slack):
		s.Fatalf("no Turn %v after the release: %s", slack, why)
		return driver.Turn{}
	}
}

// noGrant fails the case if w's channel holds a granted Turn.
func (s *suite) noGrant(w *waiter, why string) {
	s.Helper()
	select {
	case t := <-w.turns:
		if t.Granted {
			s.Errorf("a waiter got %+v: %s", t, why)
		}
	default:
	}
}

// releaseGrant checks that w's token holds key, and frees it: its Release
// succeeds.
func (s *suite) releaseGrant(w *waiter, key, why string) {
	s.Helper()
	if err := w.d.Release(s.ctx, key, w.token); err != nil {
		s.Fatalf("Release by a waiter handed the key = %v: %s", err, why)
	}
}

func handoffInOrder(s *suite) {
	holder := s.driver()
	key, a := s.key("k"), token()
	last := s.mustAcquire(holder, key, a, longTTL)
	s.needHandoff(holder)
	// The first waiter attempts twice: the later attempt replaces the
	// earlier one, keeping its place.
	var ws []*waiter
	for i := range 3 {
		if i > 0 {
			// Apart by more than a clock tick of the backend, which
			// may order its queue by time.
			sleep(s.ctx, 10*time.Millisecond)
		}
		w := s.waitQueued(key, 1, longTTL)
		if i == 0 {
			s.queue(w, key, 2, longTTL)
		}
		ws = append(ws, w)
	}
	s.mustRelease(holder, key, a)
	for i, w := range ws {
		t := s.awaitTurn(w, "a release must hand the key to the first queued waiter still waiting, in the order they queued")
		want := uint64(1)
		if i == 0 {
			want = 2
		}
		switch {
		case !t.Granted:
			s.Fatalf("waiter %d of %d (in queue order) got %+v after the release before it; want a granted Turn: waiters must be served first come, first served", i+1, len(ws), t)
		case t.Attempt != want:
			s.Errorf("waiter %d's grant names attempt %d; want %d, its last queued attempt", i+1, t.Attempt, want)
		case t.Fence <= last:
			s.Errorf("waiter %d's grant has fence %d, not above the previous holder's %d", i+1, t.Fence, last)
		}
		last = t.Fence
		for _, o := range ws[i+1:] {
			s.noGrant(o, "one release hands the key to one waiter, the first in the queue")
		}
		s.releaseGrant(w, key, "the grant must be held by the waiter's token")
	}
	if res := s.attempt(holder, key, token(), longTTL); !res.Acquired {
		s.Errorf("key held after the last waiter released it: %+v", res)
	}
}

func handoffFirstComeLongWait(s *suite) {
	holder := s.driver()
	key, a := s.key("k"), token()
	s.mustAcquire(holder, key, a, longTTL)
	s.needHandoff(holder)
	// A waiter that has waited long attempts seldom (a long Wait, as
	// backoff makes it); a newcomer attempts soon (a short Wait). The
	// newcomer's Wait still outlasts the case's release.
	early := s.subscribe(s.driver(), key)
	s.queueWait(early, key, 1, longTTL, handoffWait)
	sleep(s.ctx, 10*time.Millisecond) // apart by more than a clock tick of the backend
	late := s.subscribe(s.driver(), key)
	s.queueWait(late, key, 1, longTTL, 5*time.Second)
	s.mustRelease(holder, key, a)
	t := s.awaitTurn(early, "a release must hand the key to the waiter that queued first, whatever its Wait")
	if !t.Granted {
		s.Fatalf("the first queued waiter (long Wait) got %+v; want a granted Turn: waiters are served first come, first served, not by the time of their next attempt", t)
	}
	s.noGrant(late, "the later waiter (short Wait) must not go ahead of the earlier one")
	s.releaseGrant(early, key, "the grant must be held by the first waiter's token")
	if t := s.awaitTurn(late, "the next release must hand the key to the later waiter"); !t.Granted {
		s.Errorf("the later waiter got %+v after the first released; want a granted Turn", t)
	}
	s.releaseGrant(late, key, "the grant must be held by the later waiter's token")
}

func handoffLeaseFromAttempt(s *suite) {
	holder := s.driver()
	key, a := s.key("k"), token()
	f := s.mustAcquire(holder, key, a, longTTL)
	in, ok := holder.(driver.Inspector)
	if !ok {
		s.Skipf("%T is not a driver.Inspector", holder)
	}
	const ttl = 10 * time.Second // shorter than the holder's
	w := s.waitQueued(key, 1, ttl)
	// The release comes well after the attempt: the grant's TTL runs
	// from the release. The gap also covers the Inspect's round trip,
	// by which the bound below may fall short of the backend's expiry.
	sleep(s.ctx, time.Second)
	s.mustRelease(holder, key, a)
	t := s.awaitTurn(w, "a release must hand the key to the queued waiter")
	if !t.Granted || t.Attempt != 1 || t.Fence <= f {
		s.Fatalf("the waiter got %+v; want Granted, Attempt 1, a fence above the holder's %d", t, f)
	}
	before := time.Now()
	h, held, err := in.Inspect(s.ctx, key)
	if errors.Is(err, errors.ErrUnsupported) {
		s.Skipf("Inspect: %v", err)
	}
	// The backend's TTL is counted in whole milliseconds, at most.
	const grain = 2 * time.Millisecond
	switch {
	case err != nil || !held:
		s.Fatalf("Inspect after a handoff = held %v, %v; want held by the waiter", held, err)
	case h.Owner != w.owner || h.Fence != t.Fence:
		s.Errorf("Inspect after a handoff = %+v; want the waiter's owner %q and the Turn's fence %d", h, w.owner, t.Fence)
	case before.Add(h.TTL + grain).Before(w.sent.Add(ttl)):
		s.Errorf("a handed-off grant expires by %v after the attempt was sent, sooner than its TTL %v: the waiter counts its lease from the attempt's send time, so the backend must keep the key at least that long",
			before.Add(h.TTL).Sub(w.sent).Round(time.Millisecond), ttl)
	case h.TTL > ttl+grain:
		s.Errorf("a handed-off grant has %v left; want at most the queued attempt's TTL %v (not the previous holder's %v)", h.TTL, ttl, longTTL)
	}
	s.releaseGrant(w, key, "the grant must be held by the waiter's token")
}

func handoffSkipsCancelled(s *suite) {
	holder := s.driver()
	key, a := s.key("k"), token()
	s.mustAcquire(holder, key, a, longTTL)
	s.needHandoff(holder)
	gone := s.waitQueued(key, 1, longTTL)
	next := s.waitQueued(key, 1, longTTL)
	gone.cancel()
	s.mustRelease(holder, key, a)
	if t := s.awaitTurn(next, "a waiter that left must pass its turn to the next at once"); !t.Granted {
		s.Errorf("the waiter after one that left got %+v; want a granted Turn", t)
	}
	s.noGrant(gone, "no Turn may come after cancel returned")
	if err := gone.d.Release(s.ctx, key, gone.token); !errors.Is(err, driver.ErrNotHeld) {
		s.Errorf("Release by the waiter that left = %v; want ErrNotHeld: a waiter that no longer listens must not be handed the key", err)
	}
	s.releaseGrant(next, key, "the grant must be held by the waiter's token")
}

func handoffUnreadGrantReleased(s *suite) {
	holder := s.driver()
	key, a := s.key("k"), token()
	s.mustAcquire(holder, key, a, longTTL)
	s.needHandoff(holder)
	// The first waiter's grant would keep the key for a TTL longer than
	// the case if nobody released it.
	first := s.waitQueued(key, 1, longTTL)
	next := s.waitQueued(key, 1, longTTL)
	s.mustRelease(holder, key, a)
	// The first waiter leaves without reading: its grant is in its
	// channel when cancel returns, and it releases it, as the contract
	// says; a grant missing there keeps the key from the next waiter.
	first.cancel()
	select {
	case t := <-first.turns:
		if t.Granted {
			s.releaseGrant(first, key, "a grant found in the channel after cancel is held by the waiter's token")
		}
	default:
	}
	if t := s.awaitTurn(next, "the grant of a waiter that left must be in its channel, whose release hands the key to the next"); !t.Granted {
		s.Errorf("the second waiter got %+v; want a granted Turn", t)
	}
	s.noGrant(first, "no Turn may come after cancel returned")
	s.releaseGrant(next, key, "the grant must be held by the waiter's token")
}

func handoffNotToAttemptZero(s *suite) {
	holder := s.driver()
	key, a := s.key("k"), token()
	s.mustAcquire(holder, key, a, longTTL)
	s.needHandoff(holder)
	w := s.waitQueued(key, 0, longTTL)
	s.mustRelease(holder, key, a)
	if t := s.awaitTurn(w, "a release must wake a waiter queued without an attempt number"); t.Granted {
		s.Errorf("a waiter queued with Attempt 0 got %+v; it must only be woken: it cannot tell which attempt a grant is counted from", t)
	}
	if err := w.d.Release(s.ctx, key, w.token); !errors.Is(err, driver.ErrNotHeld) {
		s.Errorf("Release by a waiter queued with Attempt 0 = %v; want ErrNotHeld: it must not be handed the key", err)
	}
	s.mustAcquire(holder, key, token(), longTTL)
}
