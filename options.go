package dlock

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"
)

// Defaults used when an [Options] field is zero.
const (
	DefaultTTL            = 15 * time.Second
	DefaultReleaseTimeout = 5 * time.Second
	// MinTTL is the shortest TTL accepted: backends count in milliseconds.
	MinTTL = time.Millisecond
	// MaxKeyLen bounds key length, so a key can never be a memory hazard
	// for a backend.
	MaxKeyLen = 1024
)

// Options configure a [Locker] (in [New]) or one call (in [Locker.Acquire],
// [Locker.TryAcquire], [Locker.Do]). A nil *Options means the defaults; in a
// call, zero fields take the Locker's values.
type Options struct {
	// TTL is how long the backend keeps a lock without renewal: how long
	// others wait when a holder vanishes. Default: 15s. At least 1ms.
	TTL time.Duration

	// RenewInterval is how often a held lease is refreshed. Default: TTL/3.
	// It must be below TTL. A negative value disables automatic renewal:
	// the lease then ends at its first deadline unless refreshed by hand
	// with [Lease.Refresh].
	RenewInterval time.Duration

	// Drift is subtracted from TTL to form the local deadline, covering
	// clock-rate differences between this process and the backend.
	// Default: TTL/100 + 2ms.
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
	if in.TTL != 0 {
		s.ttl = in.TTL
	}
	if s.ttl == 0 {
		s.ttl = DefaultTTL
	}
	if s.ttl < MinTTL {
		return s, fmt.Errorf("%w: TTL %v is below the minimum %v", ErrInvalid, s.ttl, MinTTL)
	}
	// Renew interval and drift follow the TTL unless set explicitly, here
	// or in the Locker's options.
	if in.RenewInterval != 0 {
		s.renew, s.renewSet = in.RenewInterval, true
	} else if !s.renewSet {
		s.renew = s.ttl / 3
	}
	if s.renew >= s.ttl {
		return s, fmt.Errorf("%w: RenewInterval %v is not below TTL %v", ErrInvalid, s.renew, s.ttl)
	}
	if in.Drift != 0 {
		s.drift, s.driftSet = in.Drift, true
	} else if !s.driftSet {
		s.drift = s.ttl/100 + 2*time.Millisecond
	}
	if s.drift >= s.ttl {
		return s, fmt.Errorf("%w: Drift %v is not below TTL %v", ErrInvalid, s.drift, s.ttl)
	}
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
	if s.releaseTimeout == 0 {
		s.releaseTimeout = DefaultReleaseTimeout
	}
	return s, nil
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
