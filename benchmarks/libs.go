package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/bsm/redislock"
	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/dlock-go/dlock/redlock"
	"github.com/go-redsync/redsync/v4"
	redsyncredis "github.com/go-redsync/redsync/v4/redis"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidislock"
)

// errBusy reports a try-acquire of a key someone else holds.
var errBusy = errors.New("lock busy")

// releaser is a held lock.
type releaser interface {
	Release(ctx context.Context) error
}

// lib is one library, configured, connected to its server(s).
type lib interface {
	// TryLock makes one attempt; errBusy if the key is held.
	TryLock(ctx context.Context, key string) (releaser, error)
	// Lock waits until key is granted or ctx ends.
	Lock(ctx context.Context, key string) (releaser, error)
	Close() error
}

// env is what a library is built from.
type env struct {
	main  string   // the single-node server
	nodes []string // the quorum nodes
	ttl   time.Duration
	etcd  string // the etcd member's client URL, for the etcd section
	// hook, if set, gives the hook to add to the go-redis client of each
	// server (to count round trips).
	hook func(addr string) redis.Hook
}

func (e env) hookFor(addr string) redis.Hook {
	if e.hook == nil {
		return nil
	}
	return e.hook(addr)
}

// libSpec names a library at one configuration.
type libSpec struct {
	Name   string `json:"lib"`
	Config string `json:"config"`
	Nodes  int    `json:"nodes"`
	// Options writes the settings down, for the README and the JSON.
	Options string `json:"options"`
	// keys returns the Redis keys that hold key, and how many of them must
	// expire before it is free; nil if unknown.
	keys func(key string) ([]string, int) `json:"-"`
	open func(e env) (lib, error)         `json:"-"`
}

func (s libSpec) label() string {
	l := s.Name + " (" + s.Config + ")"
	if s.Nodes > 1 {
		l = fmt.Sprintf("%s ×%d", l, s.Nodes)
	}
	return l
}

// ttlOr returns e.ttl, or def when the scenario leaves the TTL to the
// library.
func (e env) ttlOr(def time.Duration) time.Duration {
	if e.ttl > 0 {
		return e.ttl
	}
	return def
}

// The go-redis client settings. "defaults" is a plain client; "best" sizes
// the pool for 32 concurrent callers and lets contexts bound calls (which
// dlock's redisdriver asks for).
const bestClientText = "go-redis PoolSize 64, ContextTimeoutEnabled"

func goRedis(addr string, best bool, hook redis.Hook) *redis.Client {
	return goRedisWith(addr, best, false, hook)
}

// goRedisWith is goRedis, with ContextTimeoutEnabled also on a plain
// client if ctxTimeouts (redisdriver.New requires it).
func goRedisWith(addr string, best, ctxTimeouts bool, hook redis.Hook) *redis.Client {
	o := &redis.Options{Addr: addr, ContextTimeoutEnabled: ctxTimeouts}
	if best {
		o.PoolSize = 64
		o.ContextTimeoutEnabled = true
	}
	c := redis.NewClient(o)
	if hook != nil {
		c.AddHook(hook)
	}
	return c
}

// goRedisNoRetry is goRedis's best client that never retries a command,
// as redlock.NewRedis requires (a retry can hide an acquire that ran).
func goRedisNoRetry(addr string, hook redis.Hook) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64, ContextTimeoutEnabled: true, MaxRetries: -1})
	if hook != nil {
		c.AddHook(hook)
	}
	return c
}

// defaultTTL is the TTL of libraries that have none of their own (and
// dlock's default).
const defaultTTL = 15 * time.Second

// ---- the minimal lock: SET NX PX + compare-and-delete (EVALSHA) ----

var minimalRelease = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`)

type minimalLib struct {
	c      *redis.Client
	ttl    time.Duration
	notify bool          // Lock queues and waits for a PUBLISH from Release
	poll   time.Duration // Lock's retry interval (its cap with notify)

	// notify: the process's waiter id, its subscription, and the
	// channel its messages arrive on (the goroutine forwarding them ends
	// with done).
	waiter string
	ps     *redis.PubSub
	woken  <-chan struct{}
	done   chan struct{}
}

type minimalLock struct {
	l          *minimalLib
	key, token string
}

func (m *minimalLib) TryLock(ctx context.Context, key string) (releaser, error) {
	token := rand.Text()
	ok, err := m.c.SetNX(ctx, key, token, m.ttl).Result()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errBusy
	}
	return &minimalLock{m, key, token}, nil
}

// Lock waits for key. Without notify it polls every m.poll. With notify
// it is the minimal queued lock: a busy attempt appends this process's
// waiter id to the key's queue (once), and a release pops the queue's head
// and PUBLISHes to that waiter's channel alone, on which this process has
// one long-lived subscription; the woken waiter tries again. m.poll is
// then only a safety net. One Lock at a time per minimalLib (as the
// handoff contenders use it).
func (m *minimalLib) Lock(ctx context.Context, key string) (releaser, error) {
	if !m.notify {
		for {
			r, err := m.TryLock(ctx, key)
			if !errors.Is(err, errBusy) {
				return r, err
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(m.poll):
			}
		}
	}
	for {
		token := rand.Text()
		ok, err := minimalAcquireQueued.Run(ctx, m.c, []string{key, key + ":q"}, token, m.ttl.Milliseconds(), m.waiter).Int64()
		if err != nil {
			return nil, err
		}
		if ok == 1 {
			return &minimalLock{m, key, token}, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-m.woken:
		case <-time.After(m.poll):
		}
	}
}

// minimalAcquireQueued sets the key, or queues the waiter (once). On
// success it takes the waiter out of the queue, should it have queued
// before, so that no release wakes a holder.
var minimalAcquireQueued = redis.NewScript(`
if redis.call("set", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
  redis.call("lrem", KEYS[2], 0, ARGV[3])
  return 1
end
if not redis.call("lpos", KEYS[2], ARGV[3]) then redis.call("rpush", KEYS[2], ARGV[3]) end
return 0`)

// minimalReleaseNotify deletes the key if the token matches and wakes the
// first queued waiter still subscribed (PUBLISH returns the receivers).
var minimalReleaseNotify = redis.NewScript(`
if redis.call("get", KEYS[1]) ~= ARGV[1] then return 0 end
redis.call("del", KEYS[1])
while true do
  local w = redis.call("lpop", KEYS[2])
  if not w then break end
  if redis.call("publish", "minimal:w:" .. w, "") > 0 then break end
end
return 1`)

// subscribe opens the process's one subscription, on its waiter channel,
// for the notify variant.
func (m *minimalLib) subscribe() error {
	m.waiter = rand.Text()
	m.ps = m.c.Subscribe(context.Background(), "minimal:w:"+m.waiter)
	if _, err := m.ps.Receive(context.Background()); err != nil { // the confirmation
		m.ps.Close()
		return err
	}
	ch := m.ps.Channel()
	woken := make(chan struct{}, 1)
	m.woken = woken
	m.done = make(chan struct{})
	go func() {
		defer close(m.done)
		for range ch { // closed by m.ps.Close
			select {
			case woken <- struct{}{}:
			default:
			}
		}
	}()
	return nil
}

func (m *minimalLib) Close() error {
	if m.ps != nil {
		m.ps.Close()
		<-m.done
	}
	return m.c.Close()
}

func (l *minimalLock) Release(ctx context.Context) error {
	var n int64
	var err error
	if l.l.notify {
		n, err = minimalReleaseNotify.Run(ctx, l.l.c, []string{l.key, l.key + ":q"}, l.token).Int64()
	} else {
		n, err = minimalRelease.Run(ctx, l.l.c, []string{l.key}, l.token).Int64()
	}
	if err == nil && n != 1 {
		err = errors.New("minimal: not held")
	}
	return err
}

// ---- dlock ----

type dlockLib struct {
	l       *dlock.Locker
	clients []*redis.Client
}

func (d *dlockLib) TryLock(ctx context.Context, key string) (releaser, error) {
	le, err := d.l.TryAcquire(ctx, key, nil)
	if errors.Is(err, dlock.ErrNotAcquired) && ctx.Err() == nil {
		return nil, errBusy
	}
	if err != nil {
		return nil, err
	}
	return le, nil
}

func (d *dlockLib) Lock(ctx context.Context, key string) (releaser, error) {
	le, err := d.l.Acquire(ctx, key, nil)
	if err != nil {
		return nil, err
	}
	return le, nil
}

func (d *dlockLib) Close() error {
	var err error
	if d.l != nil {
		err = d.l.Close()
	}
	for _, c := range d.clients {
		c.Close()
	}
	return err
}

func openDlock(e env, best, noFence bool) (lib, error) {
	c := goRedisWith(e.main, best, true, e.hookFor(e.main))
	lock := &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: e.ttlOr(defaultTTL), DisableFencing: noFence}}
	l, err := redisdriver.New(c, &redisdriver.Options{Lock: lock})
	if err != nil {
		c.Close()
		return nil, err
	}
	return &dlockLib{l: l, clients: []*redis.Client{c}}, nil
}

func openRedlock(e env, n int, fencing bool) (lib, error) {
	if len(e.nodes) < n {
		return nil, fmt.Errorf("redlock over %d nodes: only %d servers", n, len(e.nodes))
	}
	d := &dlockLib{}
	var clients []redis.UniversalClient
	for _, a := range e.nodes[:n] {
		c := goRedisNoRetry(a, e.hookFor(a))
		d.clients = append(d.clients, c)
		clients = append(clients, c)
	}
	l, err := redlock.NewRedis(clients, &redlock.Options{DisableFencing: !fencing, Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: e.ttlOr(defaultTTL)}}})
	if err != nil {
		d.Close()
		return nil, err
	}
	d.l = l
	return d, nil
}

func dlockKeys(key string) ([]string, int) {
	return []string{redisdriver.DefaultPrefix + "{" + key + "}"}, 1
}

// ---- bsm/redislock ----

type bsmLib struct {
	c     *redislock.Client
	rc    *redis.Client
	ttl   time.Duration
	retry func() redislock.RetryStrategy
}

func (b *bsmLib) TryLock(ctx context.Context, key string) (releaser, error) {
	l, err := b.c.Obtain(ctx, key, b.ttl, nil)
	if errors.Is(err, redislock.ErrNotObtained) {
		return nil, errBusy
	}
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (b *bsmLib) Lock(ctx context.Context, key string) (releaser, error) {
	for {
		// Obtain gives up after the TTL when ctx has no deadline; go on.
		l, err := b.c.Obtain(ctx, key, b.ttl, &redislock.Options{RetryStrategy: b.retry()})
		if errors.Is(err, redislock.ErrNotObtained) || errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			continue
		}
		if err != nil {
			return nil, err
		}
		return l, nil
	}
}

func (b *bsmLib) Close() error { return b.rc.Close() }

// ---- go-redsync/redsync ----

type redsyncLib struct {
	rs      *redsync.Redsync
	opts    []redsync.Option
	clients []*redis.Client
}

type redsyncLock struct{ m *redsync.Mutex }

func (r redsyncLock) Release(ctx context.Context) error {
	ok, err := r.m.UnlockContext(ctx)
	if err == nil && !ok {
		err = errors.New("redsync: not unlocked")
	}
	return err
}

func (r *redsyncLib) TryLock(ctx context.Context, key string) (releaser, error) {
	m := r.rs.NewMutex(key, r.opts...)
	err := m.TryLockContext(ctx)
	var taken *redsync.ErrTaken
	if errors.As(err, &taken) || errors.Is(err, redsync.ErrFailed) {
		return nil, errBusy
	}
	if err != nil {
		return nil, err
	}
	return redsyncLock{m}, nil
}

func (r *redsyncLib) Lock(ctx context.Context, key string) (releaser, error) {
	for {
		m := r.rs.NewMutex(key, r.opts...)
		err := m.LockContext(ctx)
		if err == nil {
			return redsyncLock{m}, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// Out of tries (the default is 32): try again, as a caller
		// that must have the lock would.
	}
}

func (r *redsyncLib) Close() error {
	for _, c := range r.clients {
		c.Close()
	}
	return nil
}

func openRedsync(e env, addrs []string, best bool) (lib, error) {
	r := &redsyncLib{}
	var pools []redsyncredis.Pool
	for _, a := range addrs {
		c := goRedis(a, best, e.hookFor(a))
		r.clients = append(r.clients, c)
		pools = append(pools, goredis.NewPool(c))
	}
	r.rs = redsync.New(pools...)
	if e.ttl > 0 {
		r.opts = append(r.opts, redsync.WithExpiry(e.ttl))
	}
	if best {
		r.opts = append(r.opts, redsync.WithRetryDelay(time.Millisecond), redsync.WithTries(1<<30), redsync.WithFailFast(true))
		if e.ttl == 0 {
			r.opts = append(r.opts, redsync.WithExpiry(defaultTTL))
		}
	}
	return r, nil
}

// ---- redis/rueidis/rueidislock ----

type rueidisLib struct{ l rueidislock.Locker }

// rueidisLock is a held rueidislock lock: its context ends when the lock
// is lost, its cancel releases it (and waits for the deletes).
type rueidisLock struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func (r rueidisLock) Release(context.Context) error { r.cancel(); return nil }

func (r *rueidisLib) TryLock(ctx context.Context, key string) (releaser, error) {
	lctx, cancel, err := r.l.TryWithContext(ctx, key)
	if errors.Is(err, rueidislock.ErrNotLocked) {
		return nil, errBusy
	}
	if err != nil {
		return nil, err
	}
	return rueidisLock{lctx, cancel}, nil
}

func (r *rueidisLib) Lock(ctx context.Context, key string) (releaser, error) {
	lctx, cancel, err := r.l.WithContext(ctx, key)
	if err != nil {
		return nil, err
	}
	return rueidisLock{lctx, cancel}, nil
}

func (r *rueidisLib) Close() error { r.l.Close(); return nil }

func openRueidis(e env, best bool) (lib, error) {
	o := rueidislock.LockerOption{ClientOption: rueidis.ClientOption{InitAddress: []string{e.main}}}
	if e.ttl > 0 {
		o.KeyValidity = e.ttl
	}
	if best {
		o.KeyMajority = 1
		o.NoLoopTracking = true
		if e.ttl == 0 {
			o.KeyValidity = defaultTTL
		}
	}
	l, err := rueidislock.NewLocker(o)
	if err != nil {
		return nil, err
	}
	return &rueidisLib{l}, nil
}

func rueidisKeys(majority int) func(string) ([]string, int) {
	return func(key string) ([]string, int) {
		var ks []string
		for i := range 2*majority - 1 {
			ks = append(ks, "rueidislock:"+strconv.Itoa(i)+":"+key)
		}
		return ks, majority
	}
}

func plainKey(key string) ([]string, int) { return []string{key}, 1 }

// ---- the catalogue ----

const (
	libMinimal   = "minimal lock"
	libDlock     = "dlock"
	libBsm       = "bsm/redislock"
	libRedsync   = "redsync"
	libRueidis   = "rueidislock"
	libRedlock   = "dlock redlock"
	cfgDefaults  = "defaults"
	cfgBest      = "best"
	cfgFencesOff = "fences off"
	cfgQueued    = "queue+pub/sub"
)

// singleNode lists the libraries on one Redis server. The minimal lock is
// a baseline, not a library: it has no waiting, renewal or fences.
func singleNode() []libSpec {
	return []libSpec{
		{Name: libMinimal, Config: "baseline", Nodes: 1, keys: plainKey,
			Options: "SET key token NX PX ttl; release: EVALSHA of GET==token → DEL; 128-bit token from crypto/rand; " + bestClientText,
			open: func(e env) (lib, error) {
				return &minimalLib{c: goRedis(e.main, true, e.hookFor(e.main)), ttl: e.ttlOr(defaultTTL), poll: time.Millisecond}, nil
			}},
		{Name: libMinimal, Config: cfgQueued, Nodes: 1, keys: plainKey,
			Options: "the minimal queued lock: a busy attempt queues the waiter (RPUSH, once); the release script pops the queue's head and PUBLISHes to that waiter's channel alone; each process has one long-lived subscription and tries again when woken. The reference for the handoff: a release and then the woken waiter's acquire, two round trips",
			open: func(e env) (lib, error) {
				m := &minimalLib{c: goRedis(e.main, true, e.hookFor(e.main)), ttl: e.ttlOr(defaultTTL), notify: true, poll: time.Second}
				if err := m.subscribe(); err != nil {
					m.c.Close()
					return nil, err
				}
				return m, nil
			}},
		{Name: libDlock, Config: cfgDefaults, Nodes: 1, keys: dlockKeys,
			Options: "redisdriver.New(plain go-redis client with ContextTimeoutEnabled, which New requires; nil): TTL 15s, renewal every TTL/3, fences on, pub/sub wake-ups",
			open:    func(e env) (lib, error) { return openDlock(e, false, false) }},
		{Name: libDlock, Config: cfgBest, Nodes: 1, keys: dlockKeys,
			Options: "as defaults, with " + bestClientText,
			open:    func(e env) (lib, error) { return openDlock(e, true, false) }},
		{Name: libDlock, Config: cfgFencesOff, Nodes: 1, keys: dlockKeys,
			Options: "as best, with Options.DisableFencing (fencing=false): leases carry fence 0, a free key is taken by a bare SET NX PX (no script); renewal and pub/sub wake-ups as before",
			open:    func(e env) (lib, error) { return openDlock(e, true, true) }},
		{Name: libBsm, Config: cfgDefaults, Nodes: 1, keys: plainKey,
			Options: "plain go-redis client; TTL 15s (it has no default); waiting: LinearBackoff(100ms) (its README's example; the default is NoRetry)",
			open: func(e env) (lib, error) {
				c := goRedis(e.main, false, e.hookFor(e.main))
				return &bsmLib{c: redislock.New(c), rc: c, ttl: e.ttlOr(defaultTTL),
					retry: func() redislock.RetryStrategy { return redislock.LinearBackoff(100 * time.Millisecond) }}, nil
			}},
		{Name: libBsm, Config: cfgBest, Nodes: 1, keys: plainKey,
			Options: bestClientText + "; TTL 15s; waiting: LinearBackoff(1ms)",
			open: func(e env) (lib, error) {
				c := goRedis(e.main, true, e.hookFor(e.main))
				return &bsmLib{c: redislock.New(c), rc: c, ttl: e.ttlOr(defaultTTL),
					retry: func() redislock.RetryStrategy { return redislock.LinearBackoff(time.Millisecond) }}, nil
			}},
		{Name: libRedsync, Config: cfgDefaults, Nodes: 1, keys: plainKey,
			Options: "goredis/v9 pool over a plain client; expiry 8s, 32 tries, retry delay 50–250ms",
			open:    func(e env) (lib, error) { return openRedsync(e, []string{e.main}, false) }},
		{Name: libRedsync, Config: cfgBest, Nodes: 1, keys: plainKey,
			Options: "goredis/v9 pool, " + bestClientText + "; expiry 15s, WithRetryDelay(1ms), unlimited tries, WithFailFast(true)",
			open:    func(e env) (lib, error) { return openRedsync(e, []string{e.main}, true) }},
		{Name: libRueidis, Config: cfgDefaults, Nodes: 1, keys: rueidisKeys(2),
			Options: "rueidis v1.0.79 client; KeyMajority 2 (3 keys on the one server), KeyValidity 5s, client-side-caching wake-ups",
			open:    func(e env) (lib, error) { return openRueidis(e, false) }},
		{Name: libRueidis, Config: cfgBest, Nodes: 1, keys: rueidisKeys(1),
			Options: "KeyMajority 1 (one key), NoLoopTracking (Redis ≥ 7.0.5), KeyValidity 15s",
			open:    func(e env) (lib, error) { return openRueidis(e, true) }},
	}
}

// quorum lists the libraries over n independent nodes.
func quorum(n int) []libSpec {
	return []libSpec{
		{Name: libRedlock, Config: "fencing on", Nodes: n,
			Options: "redlock.NewRedis over one client per node (" + bestClientText + ", MaxRetries -1, which NewRedis requires); defaults: fence write-back to a majority",
			open:    func(e env) (lib, error) { return openRedlock(e, n, true) }},
		{Name: libRedlock, Config: "fencing off", Nodes: n,
			Options: "as fencing on, with DisableFencing: one parallel round per acquire",
			open:    func(e env) (lib, error) { return openRedlock(e, n, false) }},
		{Name: libRedsync, Config: cfgDefaults, Nodes: n,
			Options: "one goredis/v9 pool per node over plain clients; library defaults",
			open:    func(e env) (lib, error) { return openRedsync(e, e.nodes[:n], false) }},
		{Name: libRedsync, Config: cfgBest, Nodes: n,
			Options: "one goredis/v9 pool per node, " + bestClientText + "; WithFailFast(true), WithRetryDelay(1ms)",
			open:    func(e env) (lib, error) { return openRedsync(e, e.nodes[:n], true) }},
	}
}

// filterLibs keeps the specs matching one of the comma-separated
// substrings in sel (all if sel is empty).
func filterLibs(specs []libSpec, sel string, keep func(libSpec) bool) []libSpec {
	var out []libSpec
	for _, s := range specs {
		if keep != nil && !keep(s) {
			continue
		}
		if sel == "" {
			out = append(out, s)
			continue
		}
		for _, p := range strings.Split(sel, ",") {
			if p != "" && strings.Contains(strings.ToLower(s.label()), strings.ToLower(p)) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// specByLabel finds a spec by its label, for child processes.
func specByLabel(label string) (libSpec, error) {
	for _, s := range append(append(singleNode(), append(quorum(3), quorum(5)...)...), etcdLibs()...) {
		if s.label() == label {
			return s, nil
		}
	}
	return libSpec{}, fmt.Errorf("unknown library %q", label)
}
