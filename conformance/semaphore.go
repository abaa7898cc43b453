package conformance

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
)

// semaphore returns a client that is a driver.Semaphore, or skips the case.
func (s *suite) semaphore() driver.Semaphore {
	s.Helper()
	d := s.driver()
	sem, ok := d.(driver.Semaphore)
	if !ok {
		s.Skipf("%T does not implement driver.Semaphore", d)
	}
	_, err := sem.AcquireSlot(s.ctx, driver.Request{Key: s.key("probe"), Token: token(), TTL: shortTTL, Owner: "conformance"}, 1)
	if errors.Is(err, errors.ErrUnsupported) {
		s.Skipf("%T cannot offer semaphores: %v", d, err)
	}
	return sem
}

// slot makes one AcquireSlot and fails the case on error.
func (s *suite) slot(sem driver.Semaphore, key, tok string, ttl time.Duration, limit int) driver.Result {
	s.Helper()
	res, err := sem.AcquireSlot(s.ctx, driver.Request{Key: key, Token: tok, TTL: ttl, Owner: "conformance " + tok[:4]}, limit)
	if err != nil {
		s.Fatalf("AcquireSlot(%q, limit %d) failed: %v", key, limit, err)
	}
	return res
}

// fill takes limit slots of key with new tokens and returns them.
func (s *suite) fill(sem driver.Semaphore, key string, ttl time.Duration, limit int) []string {
	s.Helper()
	toks := make([]string, limit)
	for i := range toks {
		toks[i] = token()
		if res := s.slot(sem, key, toks[i], ttl, limit); !res.Acquired {
			s.Fatalf("AcquireSlot %d of %d = %+v: a semaphore with %d holders must grant a slot", i+1, limit, res, i)
		}
	}
	return toks
}

// mustBeFull checks that another token gets no slot of key.
func (s *suite) mustBeFull(sem driver.Semaphore, key string, limit int, why string) driver.Result {
	s.Helper()
	tok := token()
	res := s.slot(sem, key, tok, longTTL, limit)
	if res.Acquired {
		s.Errorf("a token beyond the limit %d got a slot of %q: %s", limit, key, why)
		sem.ReleaseSlot(s.ctx, key, tok)
	}
	return res
}

func semaphoreLimit(s *suite) {
	sem := s.semaphore()
	other := s.semaphore()
	for _, limit := range []int{1, 3} {
		key := s.key("limit")
		if limit > 1 {
			key = s.key("limit3")
		}
		s.fill(sem, key, longTTL, limit)
		res := s.mustBeFull(other, key, limit, "the limit bounds the holders")
		if res.HolderTTL < 0 || res.HolderTTL > longTTL {
			s.Errorf("HolderTTL of a full semaphore = %v; want the first slot's expiry, in (0, %v], or zero if unknown", res.HolderTTL, longTTL)
		}
	}
}

func semaphoreConcurrent(s *suite) {
	const limit, workers, rounds = 3, 8, 15
	key := s.key("concurrent")
	var holding, most, granted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		sem := s.semaphore()
		wg.Go(func() {
			for range rounds {
				tok := token()
				res, err := sem.AcquireSlot(s.ctx, driver.Request{Key: key, Token: tok, TTL: longTTL, Owner: "conformance"}, limit)
				if err != nil {
					errs <- err
					return
				}
				if !res.Acquired {
					sleep(s.ctx, time.Millisecond)
					continue
				}
				granted.Add(1)
				n := holding.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				sleep(s.ctx, 2*time.Millisecond)
				holding.Add(-1)
				if err := sem.ReleaseSlot(s.ctx, key, tok); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		s.Fatalf("AcquireSlot/ReleaseSlot under concurrency failed: %v", err)
	}
	if m := most.Load(); m > limit {
		s.Errorf("%d holders of %q at once; the limit is %d", m, key, limit)
	}
	if granted.Load() == 0 {
		s.Errorf("no acquirer got a slot of a semaphore with limit %d", limit)
	}
}

func semaphoreExpiry(s *suite) {
	sem := s.semaphore()
	key := s.key("expiry")
	const limit = 2
	start := time.Now()
	s.fill(sem, key, shortTTL, limit)
	if elapsed := time.Since(start); elapsed < shortTTL/2 {
		s.mustBeFull(sem, key, limit, "slots are held until their TTL passes")
	}
	// Both slots come free at their expiry: two new tokens get them.
	for i := range limit {
		tok := token()
		until := time.Now().Add(shortTTL + slack)
		for {
			if res := s.slot(sem, key, tok, longTTL, limit); res.Acquired {
				break
			}
			if time.Now().After(until) {
				s.Fatalf("slot %d of %q still taken %v after its holder's TTL: expired holders must not count against the limit", i+1, key, time.Since(start))
			}
			sleep(s.ctx, pollEvery)
		}
	}
}

func semaphoreRelease(s *suite) {
	sem := s.semaphore()
	other := s.semaphore()
	key := s.key("release")
	const limit = 2
	toks := s.fill(sem, key, longTTL, limit)
	if err := other.ReleaseSlot(s.ctx, key, token()); !errors.Is(err, driver.ErrNotHeld) {
		s.Errorf("ReleaseSlot with a token that holds no slot = %v; want ErrNotHeld", err)
	}
	if err := sem.ReleaseSlot(s.ctx, key, toks[0]); err != nil {
		s.Fatalf("ReleaseSlot by a holder = %v", err)
	}
	if err := sem.ReleaseSlot(s.ctx, key, toks[0]); !errors.Is(err, driver.ErrNotHeld) {
		s.Errorf("second ReleaseSlot = %v; want ErrNotHeld", err)
	}
	if res := s.slot(other, key, token(), longTTL, limit); !res.Acquired {
		s.Errorf("AcquireSlot after a release = %+v; the released slot must be free at once", res)
	}
	s.mustBeFull(other, key, limit, "a release frees one slot, not more")
}

func semaphoreRefresh(s *suite) {
	sem := s.semaphore()
	key := s.key("refresh")
	const limit = 1
	ttl, gone := s.expiring()
	toks := s.fill(sem, key, ttl, limit)
	if err := sem.RefreshSlot(s.ctx, key, token(), longTTL); !errors.Is(err, driver.ErrNotHeld) {
		s.Errorf("RefreshSlot with a token that holds no slot = %v; want ErrNotHeld", err)
	}
	// A live slot is kept by its refreshes past its first TTL.
	end := time.Now().Add(2 * ttl)
	for time.Now().Before(end) {
		if err := sem.RefreshSlot(s.ctx, key, toks[0], ttl); err != nil {
			s.Fatalf("RefreshSlot of a live slot = %v", err)
		}
		sleep(s.ctx, ttl/6)
	}
	s.mustBeFull(sem, key, limit, "a refreshed slot outlives its first TTL")
	// Left to expire, it cannot be refreshed back.
	sleep(s.ctx, gone)
	if err := sem.RefreshSlot(s.ctx, key, toks[0], longTTL); !errors.Is(err, driver.ErrNotHeld) {
		s.Fatalf("RefreshSlot of an expired slot = %v; want ErrNotHeld", err)
	}
	if res := s.slot(sem, key, token(), longTTL, limit); !res.Acquired {
		s.Errorf("AcquireSlot after the holder's refresh was refused = %+v; the slot must be free", res)
	}
	if err := sem.ReleaseSlot(s.ctx, key, toks[0]); !errors.Is(err, driver.ErrNotHeld) {
		s.Errorf("ReleaseSlot of an expired slot = %v; want ErrNotHeld", err)
	}
}

func semaphoreFences(s *suite) {
	sem := s.semaphore()
	other := s.semaphore()
	key := s.key("fences")
	const limit = 3
	ttl, gone := s.expiring()
	var last uint64
	check := func(f uint64, what string) {
		s.Helper()
		if f <= last {
			s.Errorf("%s: fence %d is not above the key's last fence %d", what, f, last)
		}
		last = f
	}
	var toks []string
	for i := range limit {
		tok := token()
		d := sem
		if i%2 == 1 {
			d = other
		}
		res := s.slot(d, key, tok, longTTL, limit)
		if !res.Acquired {
			s.Fatalf("AcquireSlot %d = %+v; want a slot", i+1, res)
		}
		check(res.Fence, "a grant into a free slot")
		toks = append(toks, tok)
	}
	for _, tok := range toks {
		if err := sem.ReleaseSlot(s.ctx, key, tok); err != nil {
			s.Fatalf("ReleaseSlot = %v", err)
		}
		res := s.slot(other, key, token(), ttl, limit)
		if !res.Acquired {
			s.Fatalf("AcquireSlot after a release = %+v; want a slot", res)
		}
		check(res.Fence, "a grant after a release")
	}
	sleep(s.ctx, gone) // the three short slots expire
	res := s.slot(sem, key, token(), longTTL, limit)
	if !res.Acquired {
		s.Fatalf("AcquireSlot after expiries = %+v; want a slot", res)
	}
	check(res.Fence, "a grant after every holder expired")
}

func semaphoreOneSlot(s *suite) {
	sem := s.semaphore()
	key := s.key("oneslot")
	const limit = 2
	a := token()
	first := s.slot(sem, key, a, longTTL, limit)
	again := s.slot(sem, key, a, longTTL, limit)
	if !first.Acquired || !again.Acquired || again.Fence != first.Fence {
		s.Fatalf("AcquireSlot twice by one token = %+v, %+v; want both granted with the same fence", first, again)
	}
	if res := s.slot(sem, key, token(), longTTL, limit); !res.Acquired {
		s.Errorf("AcquireSlot by a second token = %+v: a token's repeated acquire must not take a second slot", res)
	}
	s.mustBeFull(sem, key, limit, "two tokens fill two slots")
}

func semaphoreMismatch(s *suite) {
	sem := s.semaphore()
	other := s.semaphore()
	key := s.key("mismatch")
	toks := s.fill(sem, key, longTTL, 1)
	for _, limit := range []int{2, 5} {
		res, err := other.AcquireSlot(s.ctx, driver.Request{Key: key, Token: token(), TTL: longTTL, Owner: "conformance"}, limit)
		if res.Acquired {
			s.Errorf("AcquireSlot with limit %d on a semaphore held under limit 1 was granted: the key would have more holders than a holder was promised", limit)
		}
		if !errors.Is(err, driver.ErrLimitMismatch) {
			s.Errorf("AcquireSlot with limit %d on a semaphore held under limit 1 = %v; want ErrLimitMismatch", limit, err)
		}
	}
	if err := sem.ReleaseSlot(s.ctx, key, toks[0]); err != nil {
		s.Fatalf("ReleaseSlot = %v", err)
	}
	s.fill(other, key, longTTL, 2) // free again: a new limit is set
	s.mustBeFull(sem, key, 2, "the new limit holds")
}

func semaphoreKinds(s *suite) {
	sem := s.semaphore()
	d := sem.(driver.Locker)
	lockKey, semKey := s.key("lock"), s.key("sem")
	s.mustAcquire(d, lockKey, token(), longTTL)
	res, err := sem.AcquireSlot(s.ctx, driver.Request{Key: lockKey, Token: token(), TTL: longTTL, Owner: "conformance"}, 2)
	if err == nil || res.Acquired {
		s.Errorf("AcquireSlot on a key held as a lock = %+v, %v; want an error", res, err)
	}
	s.fill(sem, semKey, longTTL, 1)
	lres, err := d.Acquire(s.ctx, driver.Request{Key: semKey, Token: token(), TTL: longTTL, Owner: "conformance"})
	if err == nil || lres.Acquired {
		s.Errorf("Acquire of a lock on a key whose slots are held = %+v, %v; want an error", lres, err)
	}
}

func semaphoreInspect(s *suite) {
	sem := s.semaphore()
	key := s.key("inspect")
	if hs, limit, err := sem.InspectSlots(s.ctx, key); err != nil || len(hs) != 0 || limit != 0 {
		s.Fatalf("InspectSlots of a free key = %v, %d, %v; want none, 0, nil", hs, limit, err)
	}
	const limit = 3
	fences := map[uint64]bool{}
	for _, ttl := range []time.Duration{longTTL, longTTL / 2} {
		res := s.slot(sem, key, token(), ttl, limit)
		fences[res.Fence] = true
	}
	hs, got, err := sem.InspectSlots(s.ctx, key)
	if err != nil {
		s.Fatalf("InspectSlots = %v", err)
	}
	if got != limit || len(hs) != 2 {
		s.Fatalf("InspectSlots = %d holders, limit %d; want 2, %d", len(hs), got, limit)
	}
	for i, h := range hs {
		if !fences[h.Fence] || h.TTL <= 0 || h.TTL > longTTL || len(h.Owner) < len("conformance") {
			s.Errorf("holder %d = %+v; want one of the fences %v, a TTL in (0, %v] and the owner", i, h, fences, longTTL)
		}
	}
	if hs[0].TTL > hs[1].TTL {
		s.Errorf("InspectSlots holders are not earliest expiry first: %v, %v", hs[0].TTL, hs[1].TTL)
	}
}

func semaphoreInspectOtherKind(s *suite) {
	sem := s.semaphore()
	d := sem.(driver.Locker)
	lockKey, semKey := s.key("lock"), s.key("sem")
	s.mustAcquire(d, lockKey, token(), longTTL)
	if hs, limit, err := sem.InspectSlots(s.ctx, lockKey); err == nil {
		s.Errorf("InspectSlots of a key held as a lock = %v, %d, nil; want an error (ErrWrongKind)", hs, limit)
	}
	ins, ok := d.(driver.Inspector)
	if !ok {
		return
	}
	s.fill(sem, semKey, longTTL, 2)
	if h, held, err := ins.Inspect(s.ctx, semKey); err == nil {
		s.Errorf("Inspect of a key whose slots are held = %+v, %v, nil; want an error (ErrWrongKind), not a free key", h, held)
	}
}

func semaphoreWakes(s *suite) {
	sem := s.semaphore()
	n, ok := sem.(driver.Notifier)
	if !ok {
		s.Skipf("%T does not implement driver.Notifier", sem)
	}
	key := s.key("wakes")
	toks := s.fill(sem, key, longTTL, 2)
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	released, unsubscribe, err := n.Subscribe(ctx, key)
	if errors.Is(err, errors.ErrUnsupported) {
		s.Skipf("Subscribe: %v", err)
	}
	if err != nil {
		s.Fatalf("Subscribe = %v", err)
	}
	defer unsubscribe()
	if err := sem.ReleaseSlot(s.ctx, key, toks[1]); err != nil {
		s.Fatalf("ReleaseSlot = %v", err)
	}
	select {
	case <-released:
	case <-time.After(slack):
		s.Fatalf("no release notification within %v of a ReleaseSlot: slot waiters would sleep until a holder's expiry", slack)
	}
}

func semaphoreLease(s *suite) {
	probe := s.semaphore() // skips the case without the capability
	const ttl = 600 * time.Millisecond
	// A waiter that is not woken sleeps until a slot's expiry (a TTL
	// renewed for ever): the retry strategy alone would wait an hour.
	l := s.locker(s.rawDriver(), &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: ttl, Retry: dlock.ExponentialBackoff(time.Hour, time.Hour)}})
	key := s.key("lease")
	two := &dlock.LeaseOptions{Limit: 2}
	a, err := l.Acquire(s.ctx, key, two)
	if err != nil {
		s.Fatalf("Acquire of a free semaphore = %v", err)
	}
	b, err := l.Acquire(s.ctx, key, two)
	if err != nil {
		s.Fatalf("Acquire of the second slot = %v", err)
	}
	sleep(s.ctx, 3*ttl)
	for _, le := range []*dlock.Lease{a, b} {
		if err := le.Err(); err != nil {
			s.Fatalf("a semaphore's lease ended after 3 TTLs: %v; renewal must keep it", err)
		}
	}
	s.mustBeFull(probe, key, 2, "renewed leases keep their slots")
	_, notifies := probe.(driver.Notifier)
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	got := make(chan *dlock.Lease, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		le, _ := l.Acquire(ctx, key, two)
		got <- le
	})
	defer wg.Wait()
	sleep(s.ctx, 50*time.Millisecond) // let the waiter find the slots taken
	released := time.Now()
	if err := a.Release(s.ctx); err != nil {
		s.Fatalf("Release of a semaphore's lease = %v", err)
	}
	bound := slack
	if !notifies {
		bound = ttl + slack // no wake-up: at the first slot's expiry at the latest
	}
	select {
	case le := <-got:
		if le == nil {
			s.Fatalf("the waiter got no slot")
		}
		if le.Fence() <= b.Fence() {
			s.Errorf("the waiter's fence %d is not above the earlier grants' (%d)", le.Fence(), b.Fence())
		}
		le.Release(s.ctx)
	case <-time.After(time.Until(released.Add(bound))):
		cancel()
		s.Fatalf("the waiter had no slot %v after a release (driver.Notifier: %v)", bound, notifies)
	}
	b.Release(s.ctx)
}

func semaphoreLeaseLost(s *suite) {
	s.semaphore() // skips the case without the capability
	if s.h.Partitioned == nil {
		s.Skipf("Harness.Partitioned is nil")
	}
	pd, cut := s.h.Partitioned(s.std())
	if pd == nil || cut == nil {
		s.Fatalf("Harness.Partitioned returned a nil driver or cut function")
	}
	if _, ok := pd.(driver.Semaphore); !ok {
		pd.Close()
		s.Skipf("Harness.Partitioned's driver %T is not a driver.Semaphore", pd)
	}
	// As in LeaseLostBeforeExpiry: a large drift makes the gap between
	// the local deadline and the backend's expiry observable.
	const ttl, drift = time.Second, 400 * time.Millisecond
	l := s.locker(pd, &dlock.Options{ReleaseTimeout: 200 * time.Millisecond, LeaseOptions: dlock.LeaseOptions{TTL: ttl, Drift: drift}})
	other := s.semaphore()
	key := s.key("lost")
	// other holds one slot of two, the lease the other.
	if res := s.slot(other, key, token(), longTTL, 2); !res.Acquired {
		s.Fatalf("AcquireSlot of a free semaphore failed")
	}
	lease, err := l.Acquire(s.ctx, key, &dlock.LeaseOptions{Limit: 2})
	if err != nil {
		s.Fatalf("Acquire of a semaphore's free slot = %v", err)
	}
	acquired := time.Now()
	cut()
	select {
	case <-lease.Context().Done():
	case <-time.After(ttl + slack):
		s.Fatalf("semaphore lease not lost %v after its client was cut off (TTL %v)", time.Since(acquired).Round(time.Millisecond), ttl)
	}
	lost := time.Now()
	if res := s.slot(other, key, token(), longTTL, 2); res.Acquired {
		s.Errorf("another client took the slot when the lease's Done closed (%v after Acquire, TTL %v): loss must be signalled before the backend frees the slot",
			lost.Sub(acquired).Round(time.Millisecond), ttl)
	}
	if err := lease.Err(); !errors.Is(err, dlock.ErrLeaseLost) {
		s.Errorf("lease.Err() after loss = %v; want ErrLeaseLost", err)
	}
}
