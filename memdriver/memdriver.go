package memdriver

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
)

// Scheme is the URL scheme of this driver: mem://NAME or mem://.
const Scheme = "mem"

func init() {
	driver.Register(Scheme, open)
}

// Store is an in-process lock backend: the state that several clients
// ([Store.Driver]) share, as several machines share one Redis server.
//
// A Store is safe for concurrent use. Its zero value is not usable; call
// [NewStore].
type Store struct {
	// born is the wall clock when the store was made, which tells
	// whether it was made in a synctest bubble. See home.
	born time.Time

	mu   sync.Mutex
	keys map[string]*entry                 // every key ever locked; see entry
	subs map[string]map[*subscription]bool // release subscribers by key
}

// entry is the state of one key. It stays in the map after the lock is
// released or expires, so that the key's fences keep increasing: a store
// keeps a few dozen bytes for every key it has ever locked, which is fine
// for tests and for programs with a bounded set of keys.
type entry struct {
	last uint64 // highest fence granted or raised; the next grant exceeds it

	// The holder; token is empty when the key is free. A holder whose
	// expires has passed is treated as absent and cleared on the next
	// access to the key.
	token   string
	owner   string
	fence   uint64
	expires time.Time
	since   time.Time // when the holder acquired the key

	// The semaphore's holders by token, and the limit they hold their
	// slots under; see semaphore.go. A key has a lock holder or slot
	// holders, never both.
	slots map[string]*slot
	limit int

	queue []queued // waiters that accept grants, first come first; see handoff.go
}

// held reports whether e has an unexpired holder at now, clearing an
// expired one.
func (e *entry) held(now time.Time) bool {
	if e.token != "" && !now.Before(e.expires) {
		e.token, e.owner, e.fence = "", "", 0
	}
	return e.token != ""
}

// subscription is a Subscribe (ch) or a SubscribeHandoff (turns, token).
type subscription struct {
	c     *client
	ch    chan struct{}
	turns chan driver.Turn
	token string
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{
		born: time.Now().Round(0),
		keys: make(map[string]*entry),
		subs: make(map[string]map[*subscription]bool),
	}
}

// Driver returns a new client of the store. Closing a client does not
// affect the store or its other clients; a closed client's calls return an
// error wrapping [dlock.ErrClosed].
func (s *Store) Driver() driver.Locker { return &client{s: s} }

// Locker returns a [dlock.Locker] over a new client of the store. opts may
// be nil for the defaults.
func (s *Store) Locker(opts *dlock.Options) *dlock.Locker {
	return dlock.New(s.Driver(), opts)
}

// New returns a [dlock.Locker] over a store of its own. opts may be nil for
// the defaults.
func New(opts *dlock.Options) *dlock.Locker {
	return NewStore().Locker(opts)
}

// Named stores of mem://NAME URLs. They live as long as the process.
var named struct {
	sync.Mutex
	m map[string]*Store
}

func open(_ context.Context, u *url.URL) (driver.Locker, error) {
	if err := driver.UnknownParams(u); err != nil {
		return nil, err
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.Opaque != "" {
		return nil, fmt.Errorf("%w: %s: a mem URL is mem://NAME or mem://", driver.ErrInvalid, driver.Redacted(u))
	}
	if u.Host == "" {
		return NewStore().Driver(), nil
	}
	named.Lock()
	defer named.Unlock()
	s := named.m[u.Host]
	if s == nil {
		s = NewStore()
		if named.m == nil {
			named.m = make(map[string]*Store)
		}
		named.m[u.Host] = s
	}
	return s.Driver(), nil
}

// client is one connection to a Store: what Store.Driver returns.
type client struct {
	s      *Store
	closed bool // guarded by s.mu
}

var (
	_ driver.Locker         = (*client)(nil)
	_ driver.Notifier       = (*client)(nil)
	_ driver.Inspector      = (*client)(nil)
	_ driver.BatchRefresher = (*client)(nil)
	_ driver.FenceRaiser    = (*client)(nil)
	_ driver.Semaphore      = (*client)(nil)
)

var errClosed = fmt.Errorf("memdriver: client closed: %w", driver.ErrClosed)

// errElsewhere reports a store used across a testing/synctest bubble's
// border.
var errElsewhere = fmt.Errorf("memdriver: %w: store used outside the testing/synctest bubble it was made in, "+
	"or inside one though it was made outside any: its clock and channels belong to where it was made. "+
	"Make the Store (or the Locker from New, or the first Open of a mem://NAME) inside synctest.Test, "+
	"and close its Lockers before synctest.Test returns", driver.ErrInvalid)

// Every testing/synctest bubble's fake clock starts at midnight UTC,
// January 1st 2000; a real clock is never in that year.
var (
	bubbleEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	bubbleEnd   = bubbleEpoch.AddDate(1, 0, 0)
)

// inTest is set in test binaries, the only place synctest bubbles exist.
var inTest = testing.Testing()

func bubbleTime(t time.Time) bool { return !t.Before(bubbleEpoch) && t.Before(bubbleEnd) }

// home returns errElsewhere if the caller is plainly not where s was made:
// the clock says the store was made in a synctest bubble and is used
// outside any, or the other way round, or used in a bubble whose clock is
// behind the one it was made in. Without it, a Locker made outside a
// bubble and used inside waits on the real clock's timers, which the
// bubble does not advance, and hangs without a word. (Go gives no way to
// tell two bubbles apart; a Locker used in a bubble other than its own
// makes the runtime fail with "send on synctest channel from outside
// bubble".)
//
// It runs only in test binaries, where bubbles exist: elsewhere a real
// clock may well start in 2000 (a device without a battery-backed clock)
// and then jump.
func (s *Store) home() error {
	if !inTest {
		return nil
	}
	now := time.Now().Round(0)
	inside := bubbleTime(s.born)
	if inside != bubbleTime(now) || inside && now.Before(s.born) {
		return errElsewhere
	}
	return nil
}

// lock locks the store for one call. It fails if ctx has ended, as a
// network call would, if the client is closed, or if the caller is not
// where the store was made (see home).
func (c *client) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memdriver: %w", err)
	}
	if err := c.s.home(); err != nil {
		return err
	}
	c.s.mu.Lock()
	if c.closed {
		c.s.mu.Unlock()
		return errClosed
	}
	return nil
}

func notHeld(key string) error {
	return fmt.Errorf("memdriver: %q: %w", key, driver.ErrNotHeld)
}

// errExhausted refuses a grant once a key's fence reached the largest
// uint64 (only a floor or a raise from outside gets there): a larger fence
// does not exist, and one that wrapped around would go backwards.
var errExhausted = fmt.Errorf("memdriver: %w: the key's fences are exhausted (the last one is 2^64-1)", driver.ErrInvalid)

// errNoToken refuses an Acquire without a token: the store marks a free
// key with an empty one.
var errNoToken = fmt.Errorf("memdriver: %w: empty token", driver.ErrInvalid)

func (c *client) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	return c.acquire(ctx, req, driver.Queued{}, 0)
}

// acquire is Acquire of an attempt queued as q if it is busy (see
// AcquireQueued), granted with a fence of at least floor (see
// AcquireFloor).
func (c *client) acquire(ctx context.Context, req driver.Request, q driver.Queued, floor uint64) (driver.Result, error) {
	if req.Token == "" {
		return driver.Result{}, errNoToken
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
	if e.held(now) && e.token != req.Token {
		if queues(q) {
			e.enqueue(now, req, q)
		}
		return driver.Result{HolderTTL: e.expires.Sub(now)}, nil
	}
	if e.slotsHeld(now) {
		return driver.Result{}, wrongKind(req.Key, "a semaphore")
	}
	if e.token == "" {
		if e.last == math.MaxUint64 {
			return driver.Result{}, errExhausted
		}
		e.last = max(e.last+1, floor)
		e.token, e.owner, e.fence, e.since = req.Token, req.Owner, e.last, now
	}
	e.expires = now.Add(req.TTL)
	return driver.Result{Acquired: true, Fence: e.fence}, nil
}

// refresh is Refresh with s.mu held.
func (c *client) refresh(now time.Time, key, token string, ttl time.Duration) error {
	e := c.s.keys[key]
	if e == nil || !e.held(now) || e.token != token {
		return notHeld(key)
	}
	e.expires = now.Add(ttl)
	return nil
}

func (c *client) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	if err := c.lock(ctx); err != nil {
		return err
	}
	defer c.s.mu.Unlock()
	return c.refresh(time.Now(), key, token, ttl)
}

func (c *client) RefreshBatch(ctx context.Context, reqs []driver.RefreshRequest) []error {
	return c.batch(ctx, reqs, c.refresh)
}

// batch applies refresh, which needs s.mu held, to every request under one
// lock of the store, at one instant.
func (c *client) batch(ctx context.Context, reqs []driver.RefreshRequest, refresh func(now time.Time, key, token string, ttl time.Duration) error) []error {
	errs := make([]error, len(reqs))
	if err := c.lock(ctx); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	defer c.s.mu.Unlock()
	now := time.Now()
	for i, r := range reqs {
		errs[i] = refresh(now, r.Key, r.Token, r.TTL)
	}
	return errs
}

func (c *client) Release(ctx context.Context, key, token string) error {
	if err := c.lock(ctx); err != nil {
		return err
	}
	defer c.s.mu.Unlock()
	now := time.Now()
	e := c.s.keys[key]
	if e == nil || !e.held(now) || e.token != token {
		return notHeld(key)
	}
	e.token, e.owner, e.fence = "", "", 0
	if !c.s.handOff(key, e, now) {
		c.s.wakeAll(key)
	}
	return nil
}

func (c *client) Subscribe(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	if err := c.lock(ctx); err != nil {
		return nil, nil, err
	}
	defer c.s.mu.Unlock()
	sub := &subscription{c: c, ch: make(chan struct{}, 1)}
	return sub.ch, c.s.subscribe(key, sub), nil
}

// unsubscribe removes sub. s.mu must be held.
func (s *Store) unsubscribe(key string, sub *subscription) {
	delete(s.subs[key], sub)
	if len(s.subs[key]) == 0 {
		delete(s.subs, key)
	}
}

func (c *client) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	if err := c.lock(ctx); err != nil {
		return driver.Holder{}, false, err
	}
	defer c.s.mu.Unlock()
	now := time.Now()
	e := c.s.keys[key]
	if e != nil && e.slotsHeld(now) {
		// As Redis answers: the key is not free, and not a lock.
		return driver.Holder{}, false, wrongKind(key, "a semaphore")
	}
	if e == nil || !e.held(now) {
		return driver.Holder{}, false, nil
	}
	return driver.Holder{Owner: e.owner, Fence: e.fence, TTL: e.expires.Sub(now), Since: e.since}, true, nil
}

func (c *client) RaiseFence(ctx context.Context, key, token string, fence uint64) error {
	if err := c.lock(ctx); err != nil {
		return err
	}
	defer c.s.mu.Unlock()
	e := c.s.keys[key]
	if e == nil || !e.held(time.Now()) || e.token != token {
		return notHeld(key)
	}
	e.fence = fence
	e.last = max(e.last, fence)
	return nil
}

// Close ends the client's subscriptions; later calls fail. It does not
// release the client's locks: they expire on their own, as with a network
// backend. Closing twice is harmless.
func (c *client) Close() error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	for key, subs := range c.s.subs {
		for sub := range subs {
			if sub.c == c {
				c.s.unsubscribe(key, sub)
			}
		}
	}
	return nil
}
