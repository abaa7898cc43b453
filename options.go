package dlock

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/dlock-go/dlock/internal/leasetime"
)

// Defaults used when an [Options] field is zero.
const (
	DefaultTTL            = 15 * time.Second
	DefaultReleaseTimeout = 5 * time.Second
	// MinTTL is the shortest TTL accepted. Renewal must fit a round trip
	// to the backend and the ordinary pauses of a process (garbage
	// collection, a loaded CPU, the backends' millisecond clocks) between
	// the renewal and the local deadline; with the default settings that
	// leaves about 30ms at 50ms, and shorter TTLs lose leases on healthy
	// backends.
	MinTTL = leasetime.MinTTL
	// MaxKeyLen bounds key length, so a key can never be a memory hazard
	// for a backend.
	MaxKeyLen = 1024
)

// Options configure a [Locker] (in [New]) or one call (in [Locker.Acquire],
// [Locker.TryAcquire], [Locker.Do]). A nil *Options means the defaults; in a
// call, zero fields take the Locker's values.
type Options struct {
	// TTL is how long the backend keeps a lock without renewal: how long
	// others wait when a holder vanishes. Default: 15s. At least [MinTTL]
	// (50ms).
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
	// [Locker.Holder]. It is not a secret and is not checked.
	// Default: "hostname:pid".
	Owner string

	// Retry decides how long Acquire waits between attempts when the key
	// is busy or the backend failed. Waits are also cut short by release
	// notifications and by the holder's reported expiry.
	// Default: ExponentialBackoff(8ms, 1s), with no limit.
	Retry RetryStrategy

	// ReleaseTimeout bounds the release that [Locker.Do] makes after its
	// function returns, on a context detached from the caller's
	// cancellation. Default: 5s.
	ReleaseTimeout time.Duration

	// Observer receives every event of the Locker's leases and calls, for
	// metrics and tracing. Default: none, at no cost.
	Observer Observer

	// Logger receives warnings about lost leases and repeated refresh
	// failures, with key, owner, fence and cause; nothing is logged per
	// successful operation, and tokens never. Default: none.
	Logger *slog.Logger

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
}

var defaultOwner = func() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return host + ":" + strconv.Itoa(os.Getpid())
}()

var defaultRetry = ExponentialBackoff(8*time.Millisecond, time.Second)

// resolve merges o over base (the Locker's settings, or nil for New) and
// validates the result.
func (o *Options) resolve(base *settings) (settings, error) {
	var s settings
	if base != nil {
		s = *base
	} else {
		s.obs.q = newEventQueue() // one per Locker: it orders its events
	}
	var in Options
	if o != nil {
		in = *o
	}
	if in.TTL < 0 {
		return s, fmt.Errorf("%w: TTL %v is not positive", ErrInvalid, in.TTL)
	}
	if in.ReleaseTimeout < 0 {
		return s, fmt.Errorf("%w: ReleaseTimeout %v is negative", ErrInvalid, in.ReleaseTimeout)
	}
	if in.Drift < 0 {
		return s, fmt.Errorf("%w: Drift %v is negative", ErrInvalid, in.Drift)
	}
	t := s.timing()
	switch {
	case in.TTL != 0 && t.TTL != 0:
		t = t.WithTTL(in.TTL)
	case in.TTL != 0:
		t.TTL = in.TTL
	case t.TTL == 0:
		t.TTL = DefaultTTL
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
	if in.Observer != nil {
		s.obs.o = in.Observer
	}
	if in.Logger != nil {
		s.obs.log = in.Logger
	}
	if in.ReleaseTimeout != 0 {
		s.releaseTimeout = in.ReleaseTimeout
	}
	s.noFence = s.noFence || in.DisableFencing
	if s.releaseTimeout == 0 {
		s.releaseTimeout = DefaultReleaseTimeout
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
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: key of %d bytes is longer than %d", ErrInvalid, len(key), MaxKeyLen)
	}
	return nil
}
