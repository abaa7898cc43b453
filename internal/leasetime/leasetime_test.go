package leasetime

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestWithTTL: derived values follow a new TTL, an explicit drift stays,
// an explicit renewal interval keeps its ratio, disabled renewal stays off.
func TestWithTTL(t *testing.T) {
	s := time.Second
	cases := []struct {
		name string
		in   Settings
		ttl  time.Duration
		want Settings
	}{
		{"Derived", Settings{TTL: 3 * s}.Derive(), 6 * s, Settings{TTL: 6 * s, Renew: 2 * s, Drift: 62 * time.Millisecond}},
		{"ExplicitDrift", Settings{TTL: 10 * s, Drift: 3 * s, DriftSet: true}.Derive(), 20 * s,
			Settings{TTL: 20 * s, Renew: 20 * s / 3, Drift: 3 * s, DriftSet: true}},
		{"ExplicitRenewRatio", Settings{TTL: 10 * s, Renew: 2 * s, RenewSet: true}.Derive(), 20 * s,
			Settings{TTL: 20 * s, Renew: 4 * s, Drift: 202 * time.Millisecond, RenewSet: true}},
		{"RenewOff", Settings{TTL: 10 * s, Renew: -1, RenewSet: true}.Derive(), 20 * s,
			Settings{TTL: 20 * s, Renew: -1, Drift: 202 * time.Millisecond, RenewSet: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.in.WithTTL(c.ttl); got != c.want {
				t.Errorf("WithTTL(%v) = %+v; want %+v", c.ttl, got, c.want)
			}
		})
	}
}

// TestCheck: settings that guarantee loss are refused with a message
// naming the value; the defaults at the floor are accepted.
func TestCheck(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		in   Settings
		want string // "" for valid
	}{
		{Settings{TTL: MinTTL}.Derive(), ""},
		{Settings{TTL: time.Second, Renew: 741 * ms, RenewSet: true}.Derive(), ""},
		{Settings{TTL: time.Second, Renew: -1, RenewSet: true}.Derive(), ""},
		{Settings{TTL: ms}.Derive(), "TTL 1ms is below the minimum 50ms"},
		{Settings{TTL: time.Second, Renew: 995 * ms, RenewSet: true}.Derive(), "RenewInterval 995ms (set)"},
		{Settings{TTL: time.Second, Renew: 750 * ms, RenewSet: true}.Derive(), "at most 3/4 of TTL 1s − Drift 12ms, 741ms"},
		{Settings{TTL: time.Second, Drift: time.Second, DriftSet: true}.Derive(), "Drift 1s is not below TTL 1s"},
	}
	for _, c := range cases {
		err := c.in.Check()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("Check(%+v) = %v; want nil", c.in, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("Check(%+v) = %v; want an error naming %q", c.in, err, c.want)
		}
	}
}
