package dlock

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/leasetime"
)

// Defaults and bounds of the options; the fields that use them state
// their values.
const (
	defaultTTL            = 15 * time.Second
	defaultReleaseTimeout = 5 * time.Second
	// maxKeyLen bounds key length, so a key can never be a memory hazard
	// for a backend.
	maxKeyLen = 1024
)

// Options configure a [Locker] ([New], [Open]). A nil *Options means the
// defaults.
type Options struct {
	// LeaseOptions are the defaults of the Locker's calls: a call's
	// non-zero fields override them.
	LeaseOptions

	// ReleaseTimeout bounds the release that [Locker.Do] makes after its
	// function returns, on a context detached from the caller's
	// cancellation, and every undo of an acquire. Default: 5s.
	ReleaseTimeout time.Duration

	// Observer receives every event of the Locker's leases and calls, for
	// metrics and tracing (package dlockotel turns them into
	// OpenTelemetry instruments: set its Observe method here). Default:
	// none, at no cost.
	//
	// It must be safe for concurrent use. ctx carries the values of the
	// context of the call that started the lease (a trace span, say). It
	// never runs on the renewal machinery and never with a dlock lock
	// held, so a slow or blocking Observer (or Logger) cannot delay a
	// renewal or a deadline check. An event caused by a call (Acquire,
	// Release, Close, …) is reported on the caller's goroutine when
	// nothing is waiting to be reported; every other event, and every
	// event while others wait, is reported in order by a goroutine of the
	// Locker's own, which exits when none is left (Close does not wait
	// for it). The events of one lease arrive in the order they happened;
	// a blocking Observer only delays the events after it. If more than
	// 65,536 events wait, further ones are dropped until it catches up
	// (and this is logged once). A panic in the Observer, or in the
	// Logger's handler, is recovered and logged once per Locker (to the
	// Logger, or else to [slog.Default]); it never ends a lease or the
	// process.
	Observer func(ctx context.Context, e Event)

	// Logger receives warnings about lost leases and repeated refresh
	// failures, with key, owner, fence and cause; nothing is logged per
	// successful operation, and tokens never. Default: none.
	Logger *slog.Logger
}

// LeaseOptions configure one call ([Locker.Acquire], [Locker.TryAcquire],
// [Locker.Do], an [Election]'s leases), or a Locker's defaults for them
// ([Options]). A nil *LeaseOptions means the Locker's; zero fields take
// the Locker's values.
type LeaseOptions struct {
	// TTL is how long the backend keeps a lease without renewal: how long
	// others wait when a holder vanishes. Default: 15s. At least 50ms:
	// renewal must fit a round trip to the backend and the ordinary pauses
	// of a process (garbage collection, a loaded CPU, the backends'
	// millisecond clocks) between the renewal and the local deadline; with
	// the default settings that leaves about 30ms at 50ms, and shorter TTLs
	// lose leases on healthy backends.
	TTL time.Duration

	// RenewInterval is how often a held lease is refreshed. Default: TTL/3.
	// It must leave room for a round trip before the local deadline: at
	// most 3/4 of TTL − Drift (the last quarter is for the renewal's round
	// trip and a retry); larger values, which would lose leases on a
	// healthy backend, are refused with [ErrInvalid]. A negative value
	// disables automatic renewal: the lease then ends at its first
	// deadline unless refreshed by hand with [Lease.Refresh].
	//
	// When a call's options or [Lease.Refresh] change the TTL, a
	// RenewInterval set on the Locker (or the lease's call) keeps its
	// ratio to the TTL.
	RenewInterval time.Duration

	// Drift is subtracted from TTL to form the local deadline, covering
	// clock-rate differences between this process and the backend. It
	// must be below TTL. Default: TTL/100 + 2ms. An explicit Drift stays
	// as set when a call's options or [Lease.Refresh] change the TTL.
	Drift time.Duration

	// Owner is a human-readable name of the holder, reported by
	// [Locker.Holders]. It is not a secret and is not checked.
	// Default: "hostname:pid".
	Owner string

	// Retry decides how long Acquire waits between attempts when the key
	// is busy or the backend failed. Waits are also cut short by release
	// notifications and by the holder's reported expiry.
	// Default: ExponentialBackoff(8ms, 1s), with no limit.
	Retry RetryStrategy

	// DisableFencing switches fencing tokens off for locks, for users who
	// do not pass [Lease.Fence] to the resource they protect: every lock
	// lease's Fence is then 0, and the backend may skip the work of
	// keeping fences (on Redis a free key is taken by a bare SET NX
	// instead of the fence script: less server time per acquire; with
	// redlock the fence write-back is skipped). Mutual exclusion, renewal
	// and loss detection are unchanged: only the protection against a
	// paused holder that fences give is gone (see the package doc,
	// Fencing). Clients of one key may mix: leases of clients that keep
	// fences still get increasing ones. Semaphore slots keep their fences
	// whatever it says, as their backends keep one per key anyway. In a
	// call's options, true switches fences off for that lease; false
	// keeps the Locker's setting. Default: false (fences on).
	// URL parameter: fencing=false.
	DisableFencing bool

	// Limit is how many leases may hold the key at once. 0 or 1: a lock.
	// N ≥ 2 (at most [driver.MaxLimit], 65,536): a semaphore, N
	// concurrent backups against one database, N workers calling a
	// rate-limited API. A slot's lease has a lock's guarantees: it is
	// renewed on the Locker's one scheduler, its loss is seen before the
	// backend frees its slot, its fence is strictly greater than every
	// fence granted before on the key (in any slot), and waiters are
	// woken by releases.
	//
	// Every client of a key must use the same limit: an acquire with
	// another limit while the key has holders fails with
	// [ErrLimitMismatch], so the key never has more holders than the
	// smallest limit any of them was granted under. A semaphore needs a
	// driver with the [driver.Semaphore] capability (memdriver,
	// redisdriver); over others (redlock, whose majorities of per-node
	// semaphores do not bound the holders) an acquire with N ≥ 2 returns
	// an error wrapping errors.ErrUnsupported.
	Limit int
}

// settings are resolved options: every field set and checked.
type settings struct {
	ttl            time.Duration
	renew          time.Duration // <= 0: no automatic renewal
	drift          time.Duration
	renewSet       bool // renew was set explicitly, not derived from ttl
	driftSet       bool
	owner          string
	retry          RetryStrategy
	releaseTimeout time.Duration
	obs            observer
	noFence        bool // DisableFencing
	limit          int  // Limit; 0 for a lock
}

var defaultOwner = func() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return host + ":" + strconv.Itoa(os.Getpid())
}()

var defaultRetry = ExponentialBackoff(8*time.Millisecond, time.Second)

// resolve returns the settings of a Locker with options o.
func (o *Options) resolve() (settings, error) {
	var in Options
	if o != nil {
		in = *o
	}
	if in.ReleaseTimeout < 0 {
		return settings{}, fmt.Errorf("%w: ReleaseTimeout %v is negative", ErrInvalid, in.ReleaseTimeout)
	}
	base := settings{releaseTimeout: in.ReleaseTimeout, obs: observer{o: in.Observer, log: in.Logger, q: newEventQueue()}}
	if base.releaseTimeout == 0 {
		base.releaseTimeout = defaultReleaseTimeout
	}
	return in.LeaseOptions.resolve(&base)
}

// resolve merges o over base (a Locker's settings, or those of New in the
// making) and validates the result.
func (o *LeaseOptions) resolve(base *settings) (settings, error) {
	s := *base
	var in LeaseOptions
	if o != nil {
		in = *o
	}
	if in.TTL < 0 {
		return s, fmt.Errorf("%w: TTL %v is not positive", ErrInvalid, in.TTL)
	}
	if in.Drift < 0 {
		return s, fmt.Errorf("%w: Drift %v is negative", ErrInvalid, in.Drift)
	}
	if in.Limit < 0 {
		return s, fmt.Errorf("%w: Limit %d is negative", ErrInvalid, in.Limit)
	}
	t := s.timing()
	switch {
	case in.TTL != 0 && t.TTL != 0:
		t = t.WithTTL(in.TTL)
	case in.TTL != 0:
		t.TTL = in.TTL
	case t.TTL == 0:
		t.TTL = defaultTTL
	}
	if in.RenewInterval != 0 {
		t.Renew, t.RenewSet = in.RenewInterval, true
	}
	if in.Drift != 0 {
		t.Drift, t.DriftSet = in.Drift, true
	}
	t = t.Derive()
	if err := t.Check(); err != nil {
		return s, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	s.setTiming(t)
	if in.Owner != "" {
		s.owner = in.Owner
	}
	if s.owner == "" {
		s.owner = defaultOwner
	}
	if in.Retry != nil {
		s.retry = in.Retry
	}
	if s.retry == nil {
		s.retry = defaultRetry
	}
	s.noFence = s.noFence || in.DisableFencing
	if in.Limit != 0 {
		s.limit = in.Limit
	}
	if s.limit == 1 {
		s.limit = 0 // a lock
	}
	if s.limit != 0 {
		if err := driver.CheckLimit(s.limit); err != nil {
			return s, err
		}
	}
	return s, nil
}

// timing returns the TTL-dependent settings.
func (s *settings) timing() leasetime.Settings {
	return leasetime.Settings{TTL: s.ttl, Renew: s.renew, Drift: s.drift, RenewSet: s.renewSet, DriftSet: s.driftSet}
}

func (s *settings) setTiming(t leasetime.Settings) {
	s.ttl, s.renew, s.drift, s.renewSet, s.driftSet = t.TTL, t.Renew, t.Drift, t.RenewSet, t.DriftSet
}

func checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalid)
	case len(key) > maxKeyLen:
		return fmt.Errorf("%w: key of %d bytes is longer than %d", ErrInvalid, len(key), maxKeyLen)
	}
	return nil
}
