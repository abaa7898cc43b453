package driver_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/dlock-go/dlock/driver"
)

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"redis://alice:pw@host:6379/0?ttl=1s&password=pw2&pw=pw3", "redis://xxxxx@host:6379/0?ttl=1s&password=xxxxx&pw=xxxxx"},
		{"redis://alice@host", "redis://xxxxx@host"},
		{"default:pw@127.0.0.1:7450", "xxxxx@127.0.0.1:7450"},
		{"redis:default:pw@127.0.0.1:7450", "xxxxx@127.0.0.1:7450"},
		{"redis:/default:pw@127.0.0.1:7450", "redis:/xxxxx@127.0.0.1:7450"},
		{"redis:://default:pw@127.0.0.1:7450", "xxxxx@127.0.0.1:7450"},
		{"default:pw", "default:xxxxx"},
		{"redis://default:/pw@127.0.0.1:7450", "redis://xxxxx@127.0.0.1:7450"},
		{"redis://h/%zz?sentinel_password=pw", "redis://h/%zz?sentinel_password=xxxxx"},
		{"redis://h?ttl=1s;auth=pw", "redis://h?ttl=1s&auth=xxxxx"},
		{"redis://h?owner=me@box&pw=pw", "redis://xxxxx@box…"},
		{"redis://h?pw=1&x@y=pw", "redis://xxxxx@y…"},
		{"redis://h/0#pw", "redis://h/0"},
		{"redis://h?p%w=x", "redis://h?xxxxx"},
		{"redis://h/\n?ttl=1s", "redis://h/%0A?ttl=1s"},
		{"redis://h?pw=abc&tail&ttl=1s", "redis://h?pw=xxxxx&xxxxx&ttl=1s"},
		// What would break the one line or forge text on a terminal or
		// in a log viewer: a C1 control (NEL), line and paragraph
		// separators, a bidi override, invalid UTF-8.
		{"redis://h/%zz\u0085forged", "redis://h/%zz%C2%85forged"},
		{"redis://h/%zz\u2028forged\u2029", "redis://h/%zz%E2%80%A8forged%E2%80%A9"},
		{"redis://h/%zz\u202egnp.exe", "redis://h/%zz%E2%80%AEgnp.exe"},
		{"redis://h/%zz\x9b31m\xff", "redis://h/%zz%9B31m%FF"},
		{"redis://h/%zzé→", "redis://h/%zzé→"},
	}
	for _, tt := range tests {
		if got := driver.RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseQuery(t *testing.T) {
	bad := []string{"a=1;b=2", "a=%zz", "=1", "a=1&a=2", "%zz=1", "pw=abc&tail", "c", "ttl=", "a=1&b="}
	for _, q := range bad {
		if _, err := driver.ParseQuery(q); !errors.Is(err, driver.ErrInvalid) {
			t.Errorf("ParseQuery(%q) = %v; want ErrInvalid", q, err)
		}
	}
	q, err := driver.ParseQuery("a=1&&b=x%20y&c=%20")
	if err != nil || q.Get("a") != "1" || q.Get("b") != "x y" || q.Get("c") != " " || len(q) != 3 {
		t.Errorf("ParseQuery = %v, %v", q, err)
	}
}

// TestParseURLIPv6Zone: a link-local IPv6 address with its zone, %25
// in a URL, is a valid host.
func TestParseURLIPv6Zone(t *testing.T) {
	u, _, err := driver.ParseURL("redis://[fe80::1%25eth0]:6379/0")
	if err != nil {
		t.Fatalf("ParseURL = %v", err)
	}
	if hosts, err := driver.HostList(u, "6379"); err != nil || len(hosts) != 1 || hosts[0] != "[fe80::1%eth0]:6379" {
		t.Errorf("HostList = %v, %v; want [fe80::1%%eth0]:6379", hosts, err)
	}
}

func TestHostList(t *testing.T) {
	good := map[string]string{
		"h":                  "h:6379",
		"h:1,h2:2":           "h:1,h2:2",
		"[::1]":              "[::1]:6379",
		"[::1]:7,10.0.0.1:8": "[::1]:7,10.0.0.1:8",
		"[fe80::1%eth0]:1":   "[fe80::1%eth0]:1", // a link-local address needs its zone
	}
	for in, want := range good {
		got, err := driver.HostList(&url.URL{Scheme: "x", Host: in}, "6379")
		if err != nil || strings.Join(got, ",") != want {
			t.Errorf("HostList(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "h:", ",h", "h,,i", "h:0", "h:70000", "[::1", "[zz]", ":1"} {
		if _, err := driver.HostList(&url.URL{Scheme: "x", Host: in}, "6379"); !errors.Is(err, driver.ErrInvalid) {
			t.Errorf("HostList(%q) = %v; want ErrInvalid", in, err)
		}
	}
}

func TestUnknownParams(t *testing.T) {
	u := &url.URL{Scheme: "x", Host: "h", RawQuery: "ttl=1s&drift=1ms&ok=1&pw=S3CRET&S3CRET%40h="}
	err := driver.UnknownParams(u, "ok")
	if !errors.Is(err, driver.ErrInvalid) || !strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "S3CRET") {
		t.Errorf("UnknownParams = %v; want ErrInvalid naming pw, never S3CRET", err)
	}
	if names, _, _ := strings.Cut(err.Error(), " in "); strings.Contains(names, "ttl") || strings.Contains(names, "drift") {
		t.Errorf("UnknownParams = %v; the common parameters are known", err)
	}
}

func TestScrub(t *testing.T) {
	base := fmt.Errorf("%w: auth failed for pw S3CRET", driver.ErrUnavailable)
	err := driver.Scrub(base, "", "S3CRET")
	if strings.Contains(err.Error(), "S3CRET") || !errors.Is(err, driver.ErrUnavailable) {
		t.Errorf("Scrub = %v; want the secret hidden and the chain kept", err)
	}
	if driver.Scrub(base, "absent") != base || driver.Scrub(nil, "x") != nil {
		t.Error("Scrub changed an error without the secret, or a nil error")
	}
}

// TestScrubMasksOnlyTheSecret: Scrub masks the secret where it stands on
// its own and keeps the rest of the text: with a common development
// password ("redis", "password", "x"), the user still reads "connection
// refused" or "WRONGPASS", and ordinary words are not mangled
// ("contexxxxxt deadline exxxxxceeded"). It hid the whole message before.
func TestScrubMasksOnlyTheSecret(t *testing.T) {
	for _, tc := range []struct{ secret, text, want string }{
		{"redis", "redisdriver: open: dial tcp 127.0.0.1:6379: connect: connection refused",
			"redisdriver: open: dial tcp 127.0.0.1:6379: connect: connection refused"},
		{"password", "WRONGPASS invalid username-password pair or user is disabled.",
			"WRONGPASS invalid username-xxxxx pair or user is disabled."},
		{"x", "open: context deadline exceeded", "open: context deadline exceeded"},
		{"S3CRET", "auth failed for pw S3CRET (S3CRET)", "auth failed for pw xxxxx (xxxxx)"},
		{"p@ss", "bad p@ss!", "bad xxxxx!"},
		{"ab", "abab ab", "abab xxxxx"},
		{"redis", "open redis://xxxxx@h:1: redis: pool", "open redis://xxxxx@h:1: xxxxx: pool"},
	} {
		base := fmt.Errorf("%w: %s", context.DeadlineExceeded, tc.text)
		err := driver.Scrub(base, tc.secret)
		if want := context.DeadlineExceeded.Error() + ": " + tc.want; err.Error() != want {
			t.Errorf("Scrub(%q, %q) = %q; want %q", tc.text, tc.secret, err, want)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Scrub(%q) = %v; want the chain kept", tc.secret, err)
		}
	}
}

// FuzzParseURL plants a secret in the user, password or a query value of
// an unescaped URL: neither ParseURL's error nor RedactURL may show it.
func FuzzParseURL(f *testing.F) {
	f.Add("redis", "/0", "pw", "", uint8(0))
	f.Add("redis", "", "password", "/", uint8(1))
	f.Add("x", "/%zz", "auth", "?#", uint8(2))
	f.Add("redis", "", "a", ";b=", uint8(2))
	f.Add("redis", "", "a", "@", uint8(3))
	f.Fuzz(func(t *testing.T, scheme, path, param, middle string, where uint8) {
		secret := "Zq9" + middle + "Zq9"
		user, pass, value := "alice", "pass-word", "1"
		switch where % 4 {
		case 0:
			user = secret
		case 1:
			pass = secret
		case 2:
			if strings.HasSuffix(driver.RedactURL("x://h?"+url.QueryEscape(param)+"=v"), "=v") {
				return // a public setting's value is shown by design
			}
			value = secret
		}
		raw := scheme + "://" + user + ":" + pass + "@h:1" + path + "?" + param + "=" + value
		if where%4 == 3 {
			raw = scheme + ":" + secret + "@h:1" + path
		}
		if r := driver.RedactURL(raw); strings.Contains(r, secret) {
			t.Fatalf("RedactURL(%q) = %q shows the secret", raw, r)
		}
		u, _, err := driver.ParseURL(raw)
		if err != nil {
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("ParseURL(%q) error shows the secret: %v", raw, err)
			}
			return
		}
		if err := driver.UnknownParams(u); err != nil && strings.Contains(err.Error(), secret) {
			t.Fatalf("UnknownParams(%q) error shows the secret: %v", raw, err)
		}
		if _, err := driver.HostList(u, "6379"); err != nil && strings.Contains(err.Error(), secret) {
			t.Fatalf("HostList(%q) error shows the secret: %v", raw, err)
		}
	})
}
