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
	_ "github.com/dlock-go/dlock/memdriver"
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
			l, err := dlock.Open(ctx, c.url)
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
	l, err := dlock.Open(context.Background(), "mem://params?ttl=2s&owner=worker-7")
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
	dlock.Register("mem", func(context.Context, *url.URL) (driver.Locker, error) { return nil, nil })
}

func TestOpenOptions(t *testing.T) {
	var rec recorder
	l, err := dlock.OpenOptions(context.Background(), "mem://?owner=from-url", &dlock.Options{Owner: "from-opts", Observer: &rec})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lease, err := l.TryAcquire(context.Background(), "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	lease.Release(context.Background())
	if lease.Owner() != "from-url" {
		t.Errorf("Owner = %q; the URL's owner must win over the options'", lease.Owner())
	}
	if got := rec.kinds(); len(got) != 2 || got[0] != "granted" || got[1] != "released" {
		t.Errorf("observer saw %v; want [granted released]: OpenOptions must keep the Observer", got)
	}
}

func TestRedacted(t *testing.T) {
	u, _ := url.Parse("redis://user:hunter2@host:6379/0?sentinel_password=hunter3&ttl=1s&auth_token=hunter4")
	got := dlock.Redacted(u)
	for _, secret := range []string{"hunter2", "hunter3", "hunter4"} {
		if strings.Contains(got, secret) {
			t.Errorf("Redacted = %q shows %s", got, secret)
		}
	}
	if !strings.Contains(got, "ttl=1s") || !strings.Contains(got, "user:xxxxx@host:6379") {
		t.Errorf("Redacted = %q; want the rest kept", got)
	}
	_, err := dlock.Open(context.Background(), "mem://?password=hunter5&ttl=bad")
	if err == nil || strings.Contains(err.Error(), "hunter5") {
		t.Errorf("Open error %v shows a password given as a parameter", err)
	}
}
