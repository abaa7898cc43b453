package memdriver

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// slot is one holder of a semaphore's slots.
type slot struct {
	owner   string
	fence   uint64
	expires time.Time
	since   time.Time
}

// slotsHeld reports whether e has unexpired slot holders at now, dropping
// the expired ones (and the limit, once none is left).
func (e *entry) slotsHeld(now time.Time) bool {
	for tok, s := range e.slots {
		if !now.Before(s.expires) {
			delete(e.slots, tok)
		}
	}
	if len(e.slots) == 0 {
		e.slots, e.limit = nil, 0
	}
	return len(e.slots) > 0
}

// liveSlot returns token's unexpired slot of key, or nil. s.mu must be held.
func (c *client) liveSlot(now time.Time, key, token string) *slot {
	e := c.s.keys[key]
	if e == nil || !e.slotsHeld(now) {
		return nil
	}
	return e.slots[token]
}

func wrongKind(key, kind string) error {
	return fmt.Errorf("memdriver: %q is held as %s: %w", key, kind, driver.ErrWrongKind)
}

// AcquireSlot implements [driver.Semaphore].
func (c *client) AcquireSlot(ctx context.Context, req driver.Request, limit int) (driver.Result, error) {
	if req.Token == "" {
		return driver.Result{}, errNoToken
	}
	if err := driver.CheckLimit(limit); err != nil {
		return driver.Result{}, fmt.Errorf("memdriver: %w", err)
	}
	if err := c.lock(ctx); err != nil {
		return driver.Result{}, err
	}
	defer c.s.mu.Unlock()
	now := time.Now()
	e := c.s.keys[req.Key]
	if e == nil {
		e = &entry{}
		c.s.keys[req.Key] = e
	}
	if e.held(now) {
		return driver.Result{}, wrongKind(req.Key, "a lock")
	}
	if e.slotsHeld(now) && e.limit != limit {
		return driver.Result{}, fmt.Errorf("memdriver: %q: %w: its holders have limit %d, this acquire %d",
			req.Key, driver.ErrLimitMismatch, e.limit, limit)
	}
	if s := e.slots[req.Token]; s != nil {
		s.expires = now.Add(req.TTL)
		return driver.Result{Acquired: true, Fence: s.fence}, nil
	}
	if len(e.slots) >= limit {
		first := time.Time{}
		for _, s := range e.slots {
			if first.IsZero() || s.expires.Before(first) {
				first = s.expires
			}
		}
		return driver.Result{HolderTTL: first.Sub(now)}, nil
	}
	if e.last == math.MaxUint64 {
		return driver.Result{}, errExhausted
	}
	e.last++
	if e.slots == nil {
		e.slots = make(map[string]*slot)
	}
	e.slots[req.Token] = &slot{owner: req.Owner, fence: e.last, expires: now.Add(req.TTL), since: now}
	e.limit = limit
	return driver.Result{Acquired: true, Fence: e.last}, nil
}

// refreshSlot is RefreshSlot with s.mu held.
func (c *client) refreshSlot(now time.Time, key, token string, ttl time.Duration) error {
	s := c.liveSlot(now, key, token)
	if s == nil {
		return notHeld(key)
	}
	s.expires = now.Add(ttl)
	return nil
}

// RefreshSlot implements [driver.Semaphore].
func (c *client) RefreshSlot(ctx context.Context, key, token string, ttl time.Duration) error {
	if err := c.lock(ctx); err != nil {
		return err
	}
	defer c.s.mu.Unlock()
	return c.refreshSlot(time.Now(), key, token, ttl)
}

// RefreshSlots implements [driver.Semaphore], under one lock of the store.
func (c *client) RefreshSlots(ctx context.Context, reqs []driver.RefreshRequest) []error {
	return c.batch(ctx, reqs, c.refreshSlot)
}

// ReleaseSlot implements [driver.Semaphore]; it wakes every subscriber of
// the key.
func (c *client) ReleaseSlot(ctx context.Context, key, token string) error {
	if err := c.lock(ctx); err != nil {
		return err
	}
	defer c.s.mu.Unlock()
	now := time.Now()
	if c.liveSlot(now, key, token) == nil {
		return notHeld(key)
	}
	e := c.s.keys[key]
	delete(e.slots, token)
	e.slotsHeld(now) // forgets the limit if that was the last slot
	c.s.wakeAll(key)
	return nil
}

// InspectSlots implements [driver.Semaphore].
func (c *client) InspectSlots(ctx context.Context, key string) ([]driver.Holder, int, error) {
	if err := c.lock(ctx); err != nil {
		return nil, 0, err
	}
	defer c.s.mu.Unlock()
	now := time.Now()
	e := c.s.keys[key]
	if e != nil && e.held(now) {
		return nil, 0, wrongKind(key, "a lock")
	}
	if e == nil || !e.slotsHeld(now) {
		return nil, 0, nil
	}
	hs := make([]driver.Holder, 0, len(e.slots))
	for _, s := range e.slots {
		hs = append(hs, driver.Holder{Owner: s.owner, Fence: s.fence, TTL: s.expires.Sub(now), Since: s.since})
	}
	slices.SortFunc(hs, func(a, b driver.Holder) int { return cmp.Compare(a.TTL, b.TTL) })
	return hs, e.limit, nil
}
