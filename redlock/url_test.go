package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/internal/redisurl"
)

// TestDocumentedParamsRedlock opens every parameter the shared table names
// for redlock nodes, and redlock's own, on redlock:// against three real
// servers; on redlocks:// (no TLS servers here) it checks that Open gets
// past the URL to the network, with a cancelled context. Parameters the
// table does not give to redlock are refused. The package doc lists
// every one (issue 19.7).
func TestDocumentedParamsRedlock(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	// max_retries is go-redis's, but a node must not retry (see
	// NewRedis): only -1 is taken (0 is go-redis's default, 3 retries);
	// TestOpenURLRefusesRetries checks 2.
	own := map[string]string{"node_timeout": "300ms", "drift": "5ms", "fencing": "false", "max_retries": "-1"}
	for name := range own {
		if !strings.Contains(string(doc), name) {
			t.Errorf("parameter %s is not in the package documentation", name)
		}
	}
	var hosts []string
	for range 3 {
		hosts = append(hosts, redistest.StartProcess(t, nil).Addr())
	}
	plain := "redlock://" + strings.Join(hosts, ",") + "/0?"
	offline := "redlocks://u:pw@127.0.0.1:1,127.0.0.1:2,127.0.0.1:3/0?"
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	try := func(t *testing.T, raw string, live bool) error {
		ctx := cancelled
		if live {
			ctx = t.Context()
		}
		l, err := dlock.Open(ctx, raw, nil)
		if err != nil {
			return err
		}
		defer l.Close()
		if live {
			lease, err := l.TryAcquire(ctx, "params/"+t.Name(), nil)
			if err != nil {
				t.Fatalf("TryAcquire with %s: %v", raw, err)
			}
			lease.Release(ctx)
		}
		return nil
	}
	for _, tls := range []bool{false, true} {
		params := map[string]string{}
		accepted := map[string]bool{}
		for _, p := range redisurl.Params {
			params[p.Name] = p.Example
			accepted[p.Name] = p.Kinds&redisurl.Redlock != 0 && (tls || !p.TLSOnly)
			if accepted[p.Name] && !strings.Contains(string(doc), p.Name) {
				t.Errorf("parameter %s is not in the package documentation", p.Name)
			}
		}
		for name, v := range own {
			params[name], accepted[name] = v, true
		}
		for name, v := range params {
			raw := plain + name + "=" + url.QueryEscape(v)
			if tls {
				raw = offline + name + "=" + url.QueryEscape(v)
			}
			t.Run(map[bool]string{false: "redlock", true: "redlocks"}[tls]+"/"+name, func(t *testing.T) {
				err := try(t, raw, !tls && accepted[name])
				switch {
				case accepted[name] && errors.Is(err, dlock.ErrInvalid):
					t.Errorf("documented parameter %s refused: %v", name, err)
				case accepted[name] && !tls && err != nil:
					t.Errorf("Open with %s: %v", name, err)
				case accepted[name] && tls && err == nil:
					t.Errorf("Open of unreachable nodes with a cancelled context succeeded")
				case !accepted[name] && !errors.Is(err, dlock.ErrInvalid):
					t.Errorf("parameter %s, which redlock does not take, gave %v; want ErrInvalid", name, err)
				}
			})
		}
	}
}

// FuzzOpenRedlockURL plants a secret in the user, the password or a query
// value of an unescaped redlock URL and checks that Open's error never
// shows it. The context is cancelled, so nothing is sent, and only
// loopback hosts are opened.
func FuzzOpenRedlockURL(f *testing.F) {
	for _, scheme := range []string{"redlock", "redlocks"} {
		f.Add(scheme, "/0", "password", "", uint8(0))
		f.Add(scheme, "/0", "pw", "/", uint8(1))
		f.Add(scheme, "", "auth", "?#", uint8(2))
		f.Add(scheme, "/x", "node_timeout", ";x=", uint8(1))
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	f.Fuzz(func(t *testing.T, scheme, path, param, middle string, where uint8) {
		secret := "Zq9" + middle + "Zq9"
		user, pass, value := "alice", "pass-word", "1s"
		switch where % 3 {
		case 0:
			user = secret
		case 1:
			pass = secret
		case 2:
			if strings.HasSuffix(driver.RedactURL("x://h?"+url.QueryEscape(param)+"=v"), "=v") {
				return // a documented setting's value is shown by design
			}
			value = secret
		}
		raw := scheme + "://" + user + ":" + pass + "@127.0.0.1:1,127.0.0.1:2,127.0.0.1:3" + path + "?" + param + "=" + value
		if u, _, err := driver.ParseURL(raw); err == nil {
			hosts, _ := driver.HostList(u, "6379")
			for _, h := range hosts {
				if host, _, _ := net.SplitHostPort(h); net.ParseIP(host) == nil || !net.ParseIP(host).IsLoopback() {
					return // never dial out of 127.0.0.0/8
				}
			}
		}
		l, err := dlock.Open(cancelled, raw, nil)
		if err == nil {
			l.Close()
			return
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("Open(%q) error shows the secret: %v", raw, err)
		}
	})
}

// TestOpenURLRefusesRetries: a redlock URL that asks for command retries
// is refused before any I/O, as NewRedis refuses such clients: a retry
// after an acquire that ran can hide it.
func TestOpenURLRefusesRetries(t *testing.T) {
	_, err := dlock.Open(t.Context(), "redlock://127.0.0.1:1,127.0.0.1:2,127.0.0.1:3/0?max_retries=2", nil)
	if !errors.Is(err, dlock.ErrInvalid) || !strings.Contains(fmt.Sprint(err), "retries commands") {
		t.Errorf("Open with max_retries=2 = %v; want ErrInvalid saying the nodes would retry", err)
	}
}
