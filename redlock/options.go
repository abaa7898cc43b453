package redlock

import (
	"fmt"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redisdriver"
)

// Bounds of the default per-node timeout; see [Options.NodeTimeout].
const (
	minDefaultNodeTimeout = 100 * time.Millisecond
	maxDefaultNodeTimeout = time.Second
)

// Options configure a Redlock driver. A nil *Options means the defaults.
// The constructors copy what they need: changing Options later has no
// effect.
type Options struct {
	// NodeTimeout bounds every call to one node. A node that has not
	// answered by then counts as failed for that round, so one slow or
	// partitioned node delays an acquire by at most NodeTimeout. It must
	// stay far below the TTL: an acquire with fencing takes up to two
	// rounds, and the lease's validity is what is left of the TTL after
	// them. It is never longer than the TTL minus Drift.
	//
	// Default: TTL/10, but at least 100ms (or TTL/3 if that is smaller)
	// and at most 1s, computed from each call's TTL: short enough that a
	// dead node costs little of the TTL, long enough for a first call
	// that must connect. Calls that carry no
	// TTL (Release, Inspect, Subscribe) use the TTL of Lock, else
	// 15s. URL parameter: node_timeout.
	NodeTimeout time.Duration

	// Drift is the allowance for clock-rate differences between this
	// process and the nodes: an acquire or refresh counts only if a
	// majority confirmed it within TTL − Drift of sending it.
	// Default: TTL/100 + 2ms of each call's TTL, as in dlock.Options.
	// URL parameter: drift, which with dlock.Open is also the Locker's
	// Drift (dlock.Open passes on the value the Locker uses): one setting
	// for both.
	Drift time.Duration

	// DisableFencing skips the fence write-back. An acquire is then a
	// single parallel round, and leases carry fence 0: the maximum of the
	// nodes' fences is not handed out, because without the write-back a
	// later lease could get a smaller one, and a fence that may go
	// backwards is worse than none. Set it only if nothing uses
	// [dlock.Lease.Fence]. With fencing on (the default) every node must
	// implement driver.FenceRaiser and honour proposed fence floors
	// ([FloorAcquirer]). Default: false (fencing on).
	// URL parameter: fencing=false.
	DisableFencing bool

	// Redis configures the redisdriver driver of each node that
	// [NewRedis] and redlock:// URLs make. Default: nil, redisdriver's
	// defaults. URL parameters: those of redisdriver (prefix,
	// fence_expiry, replica_acks, replica_timeout).
	Redis *redisdriver.Options

	// Lock configures the dlock.Locker that [New] and [NewRedis] return
	// (TTL, renewal, retry). Its TTL also sets the node timeout of calls
	// that carry none. Default: nil, dlock's defaults. URLs set it with dlock's
	// common parameters (ttl, renew, drift, owner, fencing).
	Lock *dlock.Options
}

// config is resolved Options.
type config struct {
	nodeTimeout time.Duration // 0: derived from each call's TTL
	drift       time.Duration // 0: derived from each call's TTL
	fencing     bool
	lockTTL     time.Duration // for calls without a TTL
}

func (o *Options) resolve() (config, error) {
	var in Options
	if o != nil {
		in = *o
	}
	c := config{nodeTimeout: in.NodeTimeout, drift: in.Drift, fencing: !in.DisableFencing, lockTTL: 15 * time.Second}
	if in.NodeTimeout < 0 {
		return c, fmt.Errorf("%w: redlock: NodeTimeout %v is negative", driver.ErrInvalid, in.NodeTimeout)
	}
	if in.Drift < 0 {
		return c, fmt.Errorf("%w: redlock: Drift %v is negative", driver.ErrInvalid, in.Drift)
	}
	if in.Lock != nil && in.Lock.TTL > 0 {
		c.lockTTL = in.Lock.TTL
	}
	return c, nil
}

// driftFor returns the drift allowance for ttl.
func (c *config) driftFor(ttl time.Duration) time.Duration {
	if c.drift > 0 {
		return c.drift
	}
	return ttl/100 + 2*time.Millisecond
}

// timeoutFor returns the per-node timeout for a call with ttl.
func (c *config) timeoutFor(ttl time.Duration) time.Duration {
	if c.nodeTimeout > 0 {
		return c.nodeTimeout
	}
	lo := min(minDefaultNodeTimeout, ttl/3)
	return max(min(ttl/10, maxDefaultNodeTimeout), lo, time.Millisecond)
}
