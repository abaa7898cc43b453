package memdriver

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/dlock-go/dlock/driver"
)

var _ driver.Handoff = (*client)(nil)

// queued is a waiter's busy attempt, kept in its key's queue (see
// [driver.Handoff]) until the key is handed to it, its Wait runs out, or
// a release finds that it no longer listens.
type queued struct {
	token, owner string
	ttl          time.Duration
	attempt      uint64
	deadline     time.Time // the attempt's send time + Wait: it tries again by then
}

// enqueue queues req, a busy attempt of a waiter that accepts grants,
// queued as at, in arrival order: a later attempt of the same token takes
// the earlier one's place, with its own TTL, attempt and deadline. Waiters
// whose deadline has passed gave up, and leave the queue.
func (e *entry) enqueue(now time.Time, req driver.Request, at driver.Queued) {
	e.queue = slices.DeleteFunc(e.queue, func(q queued) bool { return !now.Before(q.deadline) })
	q := queued{token: req.Token, owner: req.Owner, ttl: req.TTL, attempt: at.Attempt, deadline: now.Add(at.Wait)}
	if i := slices.IndexFunc(e.queue, func(q queued) bool { return q.token == req.Token }); i >= 0 {
		e.queue[i] = q
		return
	}
	e.queue = append(e.queue, q)
}

// queues reports whether an attempt queued as q is queued when busy.
func queues(q driver.Queued) bool { return q.Wait > 0 && q.Attempt > 0 }

// AcquireQueued implements [driver.Handoff].
func (c *client) AcquireQueued(ctx context.Context, req driver.Request, q driver.Queued) (driver.Result, error) {
	return c.acquire(ctx, req, q, 0)
}

// handOff gives key, just freed at now, to the first queued waiter whose
// deadline has not passed and whose handoff subscription is still there,
// as an Acquire of its queued attempt would: a fresh fence, and the
// queued TTL from now (safe by the argument in driver.Handoff). Waiters
// passed over leave the queue. It reports whether it granted;
// s.mu must be held.
func (s *Store) handOff(key string, e *entry, now time.Time) bool {
	for len(e.queue) > 0 && e.last < math.MaxUint64 {
		q := e.queue[0]
		e.queue = e.queue[1:]
		sub := s.listener(key, q.token)
		if sub == nil || !now.Before(q.deadline) {
			continue // gave up: its turn passes to the next
		}
		e.last++
		e.token, e.owner, e.fence, e.since, e.expires = q.token, q.owner, e.last, now, now.Add(q.ttl)
		sub.grant(driver.Turn{Granted: true, Attempt: q.attempt, Fence: e.fence})
		return true
	}
	return false
}

// listener returns the handoff subscription of token to key, or nil.
func (s *Store) listener(key, token string) *subscription {
	for sub := range s.subs[key] {
		if sub.turns != nil && sub.token == token {
			return sub
		}
	}
	return nil
}

// wakeAll wakes every subscriber of key. s.mu must be held.
func (s *Store) wakeAll(key string) {
	for sub := range s.subs[key] {
		sub.wake()
	}
}

// wake tells sub that the key was released, unless a wake or a grant is
// pending already.
func (sub *subscription) wake() {
	if sub.turns != nil {
		select {
		case sub.turns <- driver.Turn{}:
		default:
		}
		return
	}
	select {
	case sub.ch <- struct{}{}:
	default:
	}
}

// grant delivers t in place of whatever sub's channel holds: a plain wake,
// which the grant makes moot, or an earlier grant to the same token, which
// has ended (the token was queued since, so the key was someone else's).
// s.mu is held, so no other send can fill the channel in between.
func (sub *subscription) grant(t driver.Turn) {
	select {
	case <-sub.turns:
	default:
	}
	sub.turns <- t
}

// SubscribeHandoff implements [driver.Handoff]. Grants are made under the
// store's lock to subscriptions present then, so once cancel has returned
// none is made.
func (c *client) SubscribeHandoff(ctx context.Context, key, token string) (<-chan driver.Turn, func(), error) {
	if token == "" {
		return nil, nil, errNoToken
	}
	if err := c.lock(ctx); err != nil {
		return nil, nil, err
	}
	defer c.s.mu.Unlock()
	sub := &subscription{c: c, turns: make(chan driver.Turn, 1), token: token}
	return sub.turns, c.s.subscribe(key, sub), nil
}

// subscribe adds sub and returns its cancel. s.mu must be held.
func (s *Store) subscribe(key string, sub *subscription) func() {
	if s.subs[key] == nil {
		s.subs[key] = make(map[*subscription]bool)
	}
	s.subs[key][sub] = true
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.unsubscribe(key, sub)
		})
	}
}
