// Package leasetime derives a lease's TTL-dependent settings (renewal
// interval, drift allowance) in one place, for the root package and for
// drivers that need the same values (redlock's drift), and checks that
// they leave a lease a chance to survive.
package leasetime

import (
	"fmt"
	"time"
)

// MinTTL is the shortest TTL a lease may have. Renewal has to fit a round
// trip to the backend, plus the scheduling delays of an ordinary process
// (a garbage-collection pause, a loaded CPU, a backend's own millisecond
// clock), between the renewal and the local deadline: with the default
// settings that window is a little under two thirds of the TTL, about 30ms
// at 50ms. Below that, leases get lost on a healthy backend.
const MinTTL = 50 * time.Millisecond

// Settings are a lease's TTL and what follows from it.
type Settings struct {
	TTL   time.Duration
	Renew time.Duration // renewal interval; negative: no automatic renewal
	Drift time.Duration // subtracted from TTL to form the local deadline

	// RenewSet and DriftSet say that Renew and Drift were set explicitly
	// rather than derived from the TTL.
	RenewSet, DriftSet bool
}

// DefaultRenew returns the renewal interval for ttl when none is set.
func DefaultRenew(ttl time.Duration) time.Duration { return ttl / 3 }

// DefaultDrift returns the drift allowance for ttl when none is set: 1% of
// the TTL for clock-rate differences, and 2ms for the backends' millisecond
// resolution.
func DefaultDrift(ttl time.Duration) time.Duration { return ttl/100 + 2*time.Millisecond }

// Derive returns s with every value that was not set explicitly derived
// from s.TTL.
func (s Settings) Derive() Settings {
	if !s.RenewSet {
		s.Renew = DefaultRenew(s.TTL)
	}
	if !s.DriftSet {
		s.Drift = DefaultDrift(s.TTL)
	}
	return s
}

// WithTTL returns s moved to a new TTL: derived values follow it, an
// explicit drift stays as it is (it is about clocks, not the TTL), and an
// explicit renewal interval keeps its ratio to the TTL (disabled renewal
// stays disabled).
func (s Settings) WithTTL(ttl time.Duration) Settings {
	if s.RenewSet && s.Renew > 0 && s.TTL > 0 && ttl != s.TTL {
		s.Renew = max(time.Duration(float64(s.Renew)*float64(ttl)/float64(s.TTL)), 1)
	}
	s.TTL = ttl
	return s.Derive()
}

// MaxRenew returns the longest renewal interval that leaves a round trip's
// room before the local deadline: three quarters of TTL − Drift. The last
// quarter is for the renewal's round trip and a retry (renewals may also be
// moved later by up to half of that slack to batch them with others).
func (s Settings) MaxRenew() time.Duration { return (s.TTL - s.Drift) / 4 * 3 }

// Check reports settings that guarantee loss. Its errors name the values
// and are meant to be wrapped with the caller's "invalid argument" error.
func (s Settings) Check() error {
	switch {
	case s.TTL < MinTTL:
		return fmt.Errorf("TTL %v is below the minimum %v (renewal needs room for a round trip and ordinary pauses)", s.TTL, MinTTL)
	case s.Drift < 0:
		return fmt.Errorf("Drift %v is negative", s.Drift)
	case s.Drift >= s.TTL:
		return fmt.Errorf("Drift %v is not below TTL %v", s.Drift, s.TTL)
	case s.Renew > s.MaxRenew():
		how := "derived as TTL/3"
		if s.RenewSet {
			how = "set"
		}
		return fmt.Errorf("RenewInterval %v (%s) leaves no room for a round trip before the local deadline: it must be at most 3/4 of TTL %v − Drift %v, %v",
			s.Renew, how, s.TTL, s.Drift, s.MaxRenew())
	}
	return nil
}
