package redisdriver

import (
	"fmt"
	"strings"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
)

// Defaults used when an [Options] field is zero.
const (
	DefaultPrefix         = "dlock:"
	DefaultFenceExpiry    = 7 * 24 * time.Hour
	DefaultReplicaTimeout = time.Second
)

// Options configure the driver. A nil *Options means the defaults. Each
// field has a URL query parameter, named in its doc, for [dlock.Open].
type Options struct {
	// Prefix starts every Redis key and channel the driver uses: a lock on
	// KEY lives at PREFIX{KEY}. It must not contain '{' or '}', which
	// would change the Cluster hash tag. Default: "dlock:". URL: prefix.
	Prefix string

	// FenceExpiry is how long the fence key of a lock (PREFIX{KEY}:fence)
	// is kept after an acquire, or after a refresh that finds less than
	// its TTL left on it (other refreshes leave the key's expiry alone: a
	// renewal writes nothing it need not), so that fence keys of keys no
	// longer used do not pile up. Fences still increase after it expires,
	// since they never fall below the server's clock in microseconds, nor
	// run more than a TTL ahead of it, and the fence key is kept at least
	// the TTL of the grant, and as long as the lock or slot.
	// Default: 168h (7 days). URL: fence_expiry.
	FenceExpiry time.Duration

	// ReplicaAcks, when above zero, makes every acquire wait (Redis WAIT)
	// until that many replicas have the lock, at most ReplicaTimeout;
	// with fewer acknowledgements, or when the reply does not come in
	// time, the lock is released again (within the caller's context while
	// it lasts) and the acquire fails: with an error wrapping
	// [dlock.ErrUnavailable] for too few acknowledgements. This
	// narrows, but does not close, the window in which a failover to a
	// replica loses a lock: Redis replication stays asynchronous, WAIT
	// does not make the write durable, and a replica that acknowledged
	// may still not be the one promoted. Refreshes are not waited for.
	// Default: 0 (off). URL: replica_acks.
	ReplicaAcks int

	// ReplicaTimeout bounds the wait for ReplicaAcks. It should be far
	// below the lock TTL. Default: 1s. URL: replica_timeout.
	ReplicaTimeout time.Duration

	// Lock holds the lease defaults of the [dlock.Locker] that [New]
	// returns (TTL, renewal, owner…); nil means dlock's defaults.
	// [NewDriver] ignores it. URL: ttl, renew, drift, owner and fencing,
	// read by [dlock.Open] itself.
	Lock *dlock.Options
}

// settings are resolved options.
type settings struct {
	prefix         string
	fenceExpiryMS  int64
	replicaAcks    int
	replicaTimeout time.Duration
}

func (o *Options) resolve() (settings, error) {
	var in Options
	if o != nil {
		in = *o
	}
	s := settings{
		prefix:         in.Prefix,
		replicaAcks:    in.ReplicaAcks,
		replicaTimeout: in.ReplicaTimeout,
	}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if strings.ContainsAny(s.prefix, "{}") {
		return s, fmt.Errorf("%w: redisdriver: Prefix %q contains '{' or '}', which would break the Cluster hash tag of lock keys", driver.ErrInvalid, s.prefix)
	}
	switch {
	case in.FenceExpiry < 0:
		return s, fmt.Errorf("%w: redisdriver: FenceExpiry %v is negative", driver.ErrInvalid, in.FenceExpiry)
	case in.FenceExpiry == 0:
		in.FenceExpiry = DefaultFenceExpiry
	case in.FenceExpiry < time.Millisecond:
		return s, fmt.Errorf("%w: redisdriver: FenceExpiry %v is below 1ms", driver.ErrInvalid, in.FenceExpiry)
	}
	s.fenceExpiryMS = ceilMS(in.FenceExpiry)
	if s.replicaAcks < 0 {
		return s, fmt.Errorf("%w: redisdriver: ReplicaAcks %d is negative", driver.ErrInvalid, s.replicaAcks)
	}
	switch {
	case s.replicaTimeout < 0:
		return s, fmt.Errorf("%w: redisdriver: ReplicaTimeout %v is negative", driver.ErrInvalid, s.replicaTimeout)
	case s.replicaTimeout == 0:
		s.replicaTimeout = DefaultReplicaTimeout
	}
	return s, nil
}

// ceilMS converts d to whole milliseconds, rounding up: the server never
// keeps a lock shorter than asked.
func ceilMS(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
