package dlock_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name, url string
		want      []string
	}{
		{"UnknownScheme", "nosuch://user:hunter2@host/", []string{`unknown URL scheme "nosuch"`, "mem", "(forgotten import?)"}},
		{"Malformed", "redis://user:hunter2@host:port:x/%zz", []string{"malformed URL"}},
		{"BadTTL", "mem://?ttl=soon", []string{`ttl="soon"`}},
		{"ZeroTTL", "mem://?ttl=0s", []string{`ttl="0s"`}},
		{"RenewNotBelowTTL", "mem://?ttl=1s&renew=2s", []string{"RenewInterval 2s"}},
		{"UnknownParam", "mem://x?colour=blue", []string{"unknown URL parameter colour"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, err := dlock.Open(ctx, c.url, nil)
			if err == nil {
				l.Close()
				t.Fatalf("Open(%q) succeeded; want an error", c.url)
			}
			if !errors.Is(err, dlock.ErrInvalid) {
				t.Errorf("Open(%q) error %v does not wrap ErrInvalid", c.url, err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Open(%q) error %q does not contain %q", c.url, err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Open error shows the password: %v", err)
			}
		})
	}
}

func TestOpenCommonParams(t *testing.T) {
	l, err := dlock.Open(context.Background(), "mem://params?ttl=2s&owner=worker-7", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lease, err := l.TryAcquire(context.Background(), "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(context.Background())
	if lease.Owner() != "worker-7" {
		t.Errorf("Owner = %q; want worker-7 from the URL", lease.Owner())
	}
	if left := time.Until(lease.ValidUntil()); left > 2*time.Second || left < time.Second {
		t.Errorf("lease valid for %v; want about 2s from ttl=2s", left)
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("registering mem twice did not panic")
		}
	}()
	driver.Register("mem", func(context.Context, *url.URL) (driver.Locker, error) { return nil, nil })
}

func TestOpenOptions(t *testing.T) {
	var rec recorder
	l, err := dlock.Open(context.Background(), "mem://?owner=from-url&ttl=3s&drift=7ms", &dlock.Options{Observer: rec.Observe, LeaseOptions: dlock.LeaseOptions{Owner: "from-opts", TTL: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lease, err := l.TryAcquire(context.Background(), "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	lease.Release(context.Background())
	if lease.Owner() != "from-opts" {
		t.Errorf("Owner = %q; an explicit option must win over the URL's", lease.Owner())
	}
	if got := rec.kinds(); len(got) != 2 || got[0] != "granted" || got[1] != "released" {
		t.Errorf("observer saw %v; want [granted released]: Open must keep the Observer", got)
	}
	// The settings in effect are readable: explicit TTL and owner, the
	// URL's drift, and the renew interval derived from the TTL.
	o, releaseTimeout := dlock.Effective(l)
	if o.TTL != 2*time.Second || o.Owner != "from-opts" || o.Drift != 7*time.Millisecond || o.RenewInterval != 2*time.Second/3 {
		t.Errorf("settings = TTL %v, Owner %q, Drift %v, RenewInterval %v; want 2s, from-opts, 7ms (URL), 666ms", o.TTL, o.Owner, o.Drift, o.RenewInterval)
	}
	if releaseTimeout != 5*time.Second || o.Retry == nil {
		t.Errorf("settings lost a default: %+v, ReleaseTimeout %v", o, releaseTimeout)
	}
}

func TestOpenOptionsRenewOff(t *testing.T) {
	l, err := dlock.Open(context.Background(), "mem://?renew=-1s", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if o, _ := dlock.Effective(l); o.RenewInterval >= 0 || o.TTL != 15*time.Second {
		t.Errorf("settings = RenewInterval %v, TTL %v; want negative (off) and the default TTL", o.RenewInterval, o.TTL)
	}
}

func TestRedactURL(t *testing.T) {
	got := driver.RedactURL("redis://user:hunter2@host:6379/0?sentinel_password=hunter3&ttl=1s&auth_token=hunter4")
	for _, secret := range []string{"hunter2", "hunter3", "hunter4", "user"} {
		if strings.Contains(got, secret) {
			t.Errorf("RedactURL = %q shows %s", got, secret)
		}
	}
	if !strings.Contains(got, "ttl=1s") || !strings.Contains(got, "@host:6379/0") {
		t.Errorf("RedactURL = %q; want the rest kept", got)
	}
	_, err := dlock.Open(context.Background(), "mem://?password=hunter5&ttl=bad", nil)
	if err == nil || strings.Contains(err.Error(), "hunter5") {
		t.Errorf("Open error %v shows a password given as a parameter", err)
	}
}

// seen records the URL the "urlseen" test driver was opened with.
var seen = make(chan *url.URL, 1)

func init() {
	driver.Register("urlseen", func(_ context.Context, u *url.URL) (driver.Locker, error) {
		seen <- u
		return memdriver.NewStore().Driver(), nil
	})
}

// TestOpenPassesEffectiveSettings: the driver sees the common parameters
// with the values the Locker uses — the URL's, or explicit options that
// override them — so a driver that needs drift (redlock) shares the
// Locker's, and nothing is stripped (issue 14).
func TestOpenPassesEffectiveSettings(t *testing.T) {
	l, err := dlock.Open(context.Background(), "urlseen://x?drift=9ms&ttl=3s&renew=1s&owner=url", &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 4 * time.Second, Owner: "opts"}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	q := (<-seen).Query()
	want := map[string]string{"drift": "9ms", "ttl": "4s", "renew": "1s", "owner": "opts"}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("driver got %s=%q; want %q (query %v)", k, q.Get(k), v, q)
		}
	}
	if err := driver.UnknownParams(&url.URL{RawQuery: q.Encode()}); err != nil {
		t.Errorf("UnknownParams refuses the common parameters: %v", err)
	}
}
