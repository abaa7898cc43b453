package dlock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// ErrLimitMismatch reports an acquire of a [Semaphore] with a limit other
// than the one its current holders hold their slots under. It is not
// retried: clients that disagree on a limit are a configuration error, and
// letting them in would allow more holders than some of them were
// promised. Once every slot is free, the next acquire sets the limit anew.
var ErrLimitMismatch = driver.ErrLimitMismatch

// MaxLimit is the largest limit of a [Semaphore].
const MaxLimit = driver.MaxLimit

// A Semaphore is a key that up to Limit leases hold at once: N concurrent
// backups against one database, N workers calling a rate-limited API.
// Each lease is a [Lease] like a lock's, with the same guarantees: it is
// renewed on the Locker's one scheduler, its loss is seen before the
// backend frees its slot, its fence is strictly greater than every fence
// granted before on the key (in any slot), and waiters are woken by
// releases. A lock is the case Limit = 1, but a key is used either as a
// lock or as a semaphore: the backend refuses the other kind while the key
// is held.
//
// Every client of a key must use the same limit: an acquire with another
// limit while the key has holders fails with [ErrLimitMismatch], so the
// key never has more holders than the smallest limit any of them was
// granted under.
//
// A Semaphore needs a driver with the [driver.Semaphore] capability
// (memdriver, redisdriver); over others (redlock, whose majorities of
// per-node semaphores do not bound the holders) its methods return an error
// wrapping errors.ErrUnsupported. It is safe for concurrent use, and cheap:
// make one per use or keep it.
type Semaphore struct {
	l     *Locker
	key   string
	limit int
	slots driver.Semaphore // nil if the driver has none
}

// Semaphore returns the semaphore of key with limit slots. It does no I/O;
// a bad key or limit is reported by its methods, with [ErrInvalid].
func (l *Locker) Semaphore(key string, limit int) *Semaphore {
	s := &Semaphore{l: l, key: key, limit: limit}
	s.slots, _ = l.drv.(driver.Semaphore)
	return s
}

// Key returns the semaphore's key.
func (s *Semaphore) Key() string { return s.key }

// Limit returns how many leases may hold the key at once.
func (s *Semaphore) Limit() int { return s.limit }

// check reports what makes every call of s fail, before any I/O.
func (s *Semaphore) check() error {
	if err := s.l.check(s.key); err != nil {
		return err
	}
	if err := driver.CheckLimit(s.limit); err != nil {
		return err
	}
	if s.slots == nil {
		return fmt.Errorf("dlock: driver %T has no semaphores: %w", s.l.drv, errors.ErrUnsupported)
	}
	return nil
}

// Acquire takes a slot, waiting while all are taken, until one is granted
// or ctx ends, as [Locker.Acquire] does for a lock: woken by a holder's
// release when the backend can notify, otherwise at the first slot's
// expiry, which the failed attempt reported.
func (s *Semaphore) Acquire(ctx context.Context, opts *Options) (*Lease, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return s.l.acquireKind(ctx, s.key, opts, true, s, nil)
}

// TryAcquire makes one attempt to take a slot, and returns an error
// wrapping [ErrNotAcquired] if all are taken.
func (s *Semaphore) TryAcquire(ctx context.Context, opts *Options) (*Lease, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return s.l.acquireKind(ctx, s.key, opts, false, s, nil)
}

// Do takes a slot (waiting as [Semaphore.Acquire] does), runs fn while
// holding it, and releases it, as [Locker.Do] does for a lock: fn's
// context ends when the lease is lost.
func (s *Semaphore) Do(ctx context.Context, opts *Options, fn func(ctx context.Context, lease *Lease) error) error {
	if fn == nil {
		return fmt.Errorf("%w: nil function", ErrInvalid)
	}
	lease, err := s.Acquire(ctx, opts)
	if err != nil {
		return err
	}
	return runHeld(ctx, lease, fn)
}

// Holders reports every current holder of the semaphore's slots, earliest
// expiry first, and the limit they hold them under (0 if none does; it may
// differ from s.Limit when another client disagrees).
func (s *Semaphore) Holders(ctx context.Context) ([]Holder, int, error) {
	if err := s.check(); err != nil {
		return nil, 0, err
	}
	hs, limit, err := s.slots.InspectSlots(ctx, s.key)
	if err != nil && ctx.Err() != nil {
		err = ended(ctx, fmt.Errorf("dlock: holders of %q", s.key), err)
	}
	return hs, limit, err
}

// limitOf returns s's limit, or 0 for a lock (s nil), for events.
func (s *Semaphore) limitOf() int {
	if s == nil {
		return 0
	}
	return s.limit
}

// acquireCall makes one attempt: a lock's (s nil) or a slot's.
func (s *Semaphore) acquireCall(ctx context.Context, d driver.Locker, req driver.Request) (driver.Result, error) {
	if s == nil {
		return d.Acquire(ctx, req)
	}
	return s.slots.AcquireSlot(ctx, req, s.limit)
}

// releaseCall frees token's lock (s nil) or slot of key.
func (s *Semaphore) releaseCall(ctx context.Context, d driver.Locker, key, token string) error {
	if s == nil {
		return d.Release(ctx, key, token)
	}
	return s.slots.ReleaseSlot(ctx, key, token)
}

// refreshCall refreshes le on the backend, as a lock or a slot.
func (le *Lease) refreshCall(ctx context.Context, ttl time.Duration) error {
	if le.sem == nil {
		return le.l.drv.Refresh(ctx, le.key, le.token, ttl)
	}
	return le.sem.slots.RefreshSlot(ctx, le.key, le.token, ttl)
}

// releaseCall frees le on the backend, as a lock or a slot.
func (le *Lease) releaseCall(ctx context.Context) error {
	return le.sem.releaseCall(ctx, le.l.drv, le.key, le.token)
}

// refreshDue refreshes a renewal round's leases, reqs[i] for due[i]: the
// locks in batches of Refresh, the slots in batches of RefreshSlots. A
// round of locks alone goes out as it is, without a copy.
func (r *renewer) refreshDue(ctx context.Context, due []*Lease, reqs []driver.RefreshRequest) []error {
	var slotIdx, lockIdx []int
	for i, le := range due {
		if le.sem != nil {
			slotIdx = append(slotIdx, i)
		}
	}
	if len(slotIdx) == 0 {
		return r.refresh(ctx, reqs)
	}
	for i, le := range due {
		if le.sem == nil {
			lockIdx = append(lockIdx, i)
		}
	}
	errs := make([]error, len(reqs))
	pick := func(idx []int) []driver.RefreshRequest {
		out := make([]driver.RefreshRequest, len(idx))
		for j, i := range idx {
			out[j] = reqs[i]
		}
		return out
	}
	if len(lockIdx) > 0 {
		for j, err := range r.refresh(ctx, pick(lockIdx)) {
			errs[lockIdx[j]] = err
		}
	}
	slots := due[slotIdx[0]].sem.slots // one driver: every Semaphore of a Locker has the same
	sreqs := pick(slotIdx)
	for from := 0; from < len(sreqs); from += batchSize {
		chunk := sreqs[from:min(from+batchSize, len(sreqs))]
		got := slots.RefreshSlots(ctx, chunk)
		for j := range chunk {
			err := fmt.Errorf("dlock: RefreshSlots of %T returned %d results for %d requests", slots, len(got), len(chunk))
			if len(got) == len(chunk) {
				err = got[j]
			}
			errs[slotIdx[from+j]] = err
		}
	}
	return errs
}
