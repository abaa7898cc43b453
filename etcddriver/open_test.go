package etcddriver_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// hostPort returns the HOST:PORT of a member's client URL.
func hostPort(m *etcdtest.Member) string { return strings.TrimPrefix(m.ClientURL, "http://") }

// TestOpenRefusesBadURLs checks the strict parsing of etcd URLs: each URL
// is refused with ErrInvalid before any I/O, and the error shows no
// password.
func TestOpenRefusesBadURLs(t *testing.T) {
	ctx := testCtx(t)
	for _, tc := range []struct{ url, why string }{
		{"etcd://127.0.0.1:1/?pool=3", "an unknown parameter"},
		{"etcd://127.0.0.1:1/?skip_verify=true", "a TLS parameter on a plain scheme"},
		{"etcd://127.0.0.1:1/?ca_file=/x", "a TLS file on a plain scheme"},
		{"etcds://127.0.0.1:1/?skip_verify=maybe", "a malformed boolean"},
		{"etcds://127.0.0.1:1/?cert_file=/x", "a certificate without its key"},
		{"etcds://127.0.0.1:1/?ca_file=/nonexistent/ca.pem", "a CA file that cannot be read"},
		{"etcd://127.0.0.1:1/?dial_timeout=soon", "a malformed duration"},
		{"etcd://127.0.0.1:1/?dial_timeout=-1s", "a negative duration"},
		{"etcd://127.0.0.1:1/?call_timeout=0s", "a zero call timeout"},
		{"etcd://:s3cret@127.0.0.1:1/", "a password without a user"},
		{"etcd:///prefix", "no host"},
		{"etcd://127.0.0.1:1,:2/", "an empty host in the list"},
		{"etcd://127.0.0.1:1/?password=s3cret", "a password as an unknown parameter"},
	} {
		_, err := dlock.Open(ctx, tc.url, nil)
		if !errors.Is(err, driver.ErrInvalid) {
			t.Errorf("Open(%s) = %v; want ErrInvalid (%s)", driver.RedactURL(tc.url), err, tc.why)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open(%s) error shows the password: %v", driver.RedactURL(tc.url), err)
		}
	}
}

// TestOpen opens URLs of a running member: the prefix from the path, the
// list of hosts (one of them down), the common parameters, and a Holder
// that reports the owner from the URL.
func TestOpen(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	hp := hostPort(c.Members()[0])
	l, err := dlock.Open(ctx, "etcd://127.0.0.1:1,"+hp+"/app/locks?ttl=5s&owner=url-owner&dial_timeout=3s&call_timeout=2s", nil)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	defer l.Close()
	lease, err := l.TryAcquire(ctx, "k", nil)
	if err != nil {
		t.Fatalf("TryAcquire = %v", err)
	}
	defer lease.Release(ctx)
	cl := c.Client(t)
	resp, err := cl.Get(ctx, "app/locks/k\x00", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the lock's key app/locks/k = %v, %v; want it held under the URL's prefix", resp, err)
	}
	ttl, err := cl.TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	if err != nil || ttl.GrantedTTL != 5 {
		t.Errorf("lease of the lock = %+v, %v; want the URL's ttl, 5 s", ttl, err)
	}
	h, ok, err := soleHolder(l.Holders(ctx, "k"))
	if err != nil || !ok || h.Owner != "url-owner" || h.Fence != lease.Fence() {
		t.Errorf("Holder = %+v, %v, %v; want owner url-owner and fence %d", h, ok, err, lease.Fence())
	}
}

// TestOpenAuth opens URLs with users on a member with authentication on:
// the right password works within the user's prefix; a wrong password,
// and a prefix the user may not write, fail at Open, with errors that do
// not show the password.
func TestOpenAuth(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	enableAuth(t, c)
	hp := hostPort(c.Members()[0])

	l, err := dlock.Open(ctx, "etcd://app:app-pass@"+hp+"/app", nil)
	if err != nil {
		t.Fatalf("Open with the app user = %v", err)
	}
	lease, err := l.TryAcquire(ctx, "k", nil)
	if err != nil {
		t.Errorf("TryAcquire with the app user = %v", err)
	} else {
		lease.Release(ctx)
	}
	l.Close()

	for _, tc := range []struct{ url, why string }{
		{"etcd://app:wr0ng-pass@" + hp + "/app?dial_timeout=2s", "a wrong password"},
		{"etcd://app:app-pass@" + hp + "/other", "a prefix the user may not write"},
	} {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		l, err := dlock.Open(octx, tc.url, nil)
		cancel()
		if err == nil {
			l.Close()
			t.Errorf("Open(%s) succeeded; want it refused: %s", driver.RedactURL(tc.url), tc.why)
			continue
		}
		if errors.Is(err, driver.ErrUnavailable) {
			t.Errorf("Open(%s) = %v; want a refusal, not ErrUnavailable (%s is no outage)", driver.RedactURL(tc.url), err, tc.why)
		}
		if strings.Contains(err.Error(), "-pass") {
			t.Errorf("Open(%s) error shows the password: %v", driver.RedactURL(tc.url), err)
		}
		t.Logf("%s: %v", tc.why, err)
	}
}

// enableAuth makes users root and app (read and write on app/ only), and
// turns authentication on.
func enableAuth(t *testing.T, c *etcdtest.Cluster) {
	t.Helper()
	ctx := testCtx(t)
	cl := c.Client(t)
	steps := []func() error{
		func() error { _, err := cl.RoleAdd(ctx, "root"); return err },
		func() error { _, err := cl.UserAdd(ctx, "root", "root-pass"); return err },
		func() error { _, err := cl.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cl.RoleAdd(ctx, "app"); return err },
		func() error {
			_, err := cl.RoleGrantPermission(ctx, "app", "app/", clientv3.GetPrefixRangeEnd("app/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cl.UserAdd(ctx, "app", "app-pass"); return err },
		func() error { _, err := cl.UserGrantRole(ctx, "app", "app"); return err },
		func() error { _, err := cl.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("auth setup step %d: %v", i, err)
		}
	}
}

// TestRegistered checks that both schemes are registered.
func TestRegistered(t *testing.T) {
	for _, s := range []string{etcddriver.Scheme, etcddriver.SchemeTLS} {
		if _, ok := driver.Lookup(s); !ok {
			t.Errorf("scheme %s not registered", s)
		}
	}
}
