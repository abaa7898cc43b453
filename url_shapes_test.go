package dlock_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	_ "github.com/dlock-go/dlock/redisdriver"
	_ "github.com/dlock-go/dlock/redlock"
)

// planted is the secret in the URLs of TestOpenURLShapes.
const planted = "S3CRET-pw"

// TestOpenURLShapes feeds the URL mistakes people make in DLOCK_URL to
// Open. Each is refused as invalid before any I/O (the context is
// cancelled, and ErrInvalid is never a dial error), says why, and never
// shows the secret planted in it.
func TestOpenURLShapes(t *testing.T) {
	const s = planted
	cases := []struct {
		name, url, says string
	}{
		// Secrets in malformed URLs (issue 19.1) and hosts not parsed
		// from the text (19.2).
		{"SchemeLeftOut", "default:" + s + "@127.0.0.1:7450", "want SCHEME://"},
		{"NoSlashes", "redis:default:" + s + "@127.0.0.1:7450", "want SCHEME://"},
		{"OneSlash", "redis:/default:" + s + "@127.0.0.1:7450", "want SCHEME://"},
		{"ColonSlashes", "redis:://default:" + s + "@127.0.0.1:7450", "want SCHEME://"},
		{"NoSlashesRemoteHost", "redis:default:" + s + "@10.0.0.5:6379", "want SCHEME://"},
		{"BadEscapePassword", "redis://127.0.0.1:7450/%zz?password=" + s, "%XX"},
		{"BadEscapeSentinelPassword", "redis+sentinel://127.0.0.1:7450/%zz?sentinel_password=" + s, "%XX"},
		{"BadEscapeInUserinfo", "redis://default:" + s + "%zz@127.0.0.1:7450", "malformed URL"},
		{"PasswordStartsWithSlash", "redis://default:/" + s + "@127.0.0.1:7450", "'@' after the host"},
		{"PasswordStartsWithQuestion", "redis://default:?" + s + "@127.0.0.1:7450", "'@' after the host"},
		{"PasswordStartsWithHash", "redis://default:#" + s + "@127.0.0.1:7450", "'@' after the host"},
		{"PasswordWithSlash", "redis://default:a/" + s + "@127.0.0.1:7450/0", "'@' after the host"},
		{"ClusterPasswordWithSlash", "redis+cluster://default:/" + s + "@127.0.0.1:7450,127.0.0.1:7451", "'@' after the host"},
		{"SentinelPasswordWithQuestion", "redis+sentinel://default:?" + s + "@127.0.0.1:7450/m", "'@' after the host"},
		{"RedlockPasswordWithQuestion", "redlock://default:?" + s + "@127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", "'@' after the host"},
		{"Fragment", "redis://u:" + s + "@127.0.0.1:7450/0#x", "#fragment"},
		{"PwParam", "redis://127.0.0.1:7450?pw=" + s, "unknown URL parameter pw"},
		{"AuthParam", "redis://127.0.0.1:7450?auth=" + s, "unknown URL parameter auth"},
		{"PasswordParam", "redis://u:" + s + "@127.0.0.1:7450/0?password=" + s, "unknown URL parameter password"},
		{"SecretAsParamName", "redis://127.0.0.1:7450?" + s + "%21=1", "unknown URL parameter (a name not shown)"},
		{"SecretAsBareParam", "redis://127.0.0.1:7450?" + s + "%21", "without '='"},
		{"RedlockPwParam", "redlock://127.0.0.1:1,127.0.0.1:2,127.0.0.1:3?pw=" + s, "unknown URL parameter pw"},
		{"MemPwParam", "mem://x?pw=" + s, "unknown URL parameter pw"},
		{"EmptyHost", "redis:///0", "no host"},
		{"EmptyHostWithPassword", "redis://:" + s + "@/0", "no host"},
		{"NothingAfterScheme", "redis://", "no host"},
		{"SentinelNoHost", "redis+sentinel:///mymaster", "no host"},
		{"ClusterNoHost", "rediss+cluster://:" + s + "@", "no host"},
		{"RedlockNoHost", "redlock://", "no host"},
		{"RedlockEmptyHostInList", "redlock://127.0.0.1:1,,127.0.0.1:3", "empty host"},
		{"EmptyPort", "redis://u:" + s + "@127.0.0.1:/0", "empty port"},
		{"BadPort", "redis://u:" + s + "@127.0.0.1:port/0", "malformed URL"},
		{"BadIPv6", "redis://u:" + s + "@[::1/0", "malformed"},
		{"ControlCharacter", "redis://u:" + s + "@127.0.0.1:7450/\n", "malformed URL"},
		{"SeveralHostsStandalone", "redis://u:" + s + "@127.0.0.1:7450,127.0.0.1:7451", "several hosts"},
		{"UnknownScheme", "nosuch://u:" + s + "@127.0.0.1:7450", "unknown URL scheme"},
		{"SecretInUser", "redis://" + s + ":pw@127.0.0.1:7450/zero", "database"},
		// Forms that go-redis would accept and silently read otherwise:
		// a user name without a password sends no AUTH at all (the
		// connection is the default user's, with its rights), and a
		// database in the path and in db= takes db=.
		{"UserWithoutPassword", "redis://" + s + "@127.0.0.1:7450/0", "a user name without a password"},
		{"UserEmptyPassword", "redis://" + s + ":@127.0.0.1:7450/0", "a user name without a password"},
		{"RedlockUserWithoutPassword", "redlock://" + s + "@127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", "a user name without a password"},
		{"SentinelUserWithoutPassword", "redis+sentinel://" + s + "@127.0.0.1:7450/m", "a user name without a password"},
		{"DBInPathAndParam", "redis://u:" + s + "@127.0.0.1:7450/1?db=2", "database twice"},
		{"SentinelDBInPathAndParam", "redis+sentinel://u:" + s + "@127.0.0.1:7450/m/1?db=2", "database twice"},
		// Queries that url.Query would cut short (19.3).
		{"SemicolonReplicaAcks", "redis://127.0.0.1:7450?replica_acks=2;x", "';'"},
		{"SemicolonTTL", "mem://x?ttl=1h;x", "';'"},
		{"SemicolonSecret", "redis://127.0.0.1:7450?ttl=1h;pw=" + s, "';'"},
		{"AmpersandInSecretValue", "redis://127.0.0.1:7450?pw=abc&" + s, "%26"},
		{"AmpersandInSecretValueMem", "mem://x?password=abc&" + s, "%26"},
		{"EmptyTTL", "mem://x?ttl=", "ttl has no value"},
		{"EmptyOwner", "mem://x?owner=&ttl=1s", "owner has no value"},
		{"EmptyDB", "redis://127.0.0.1:7450?db=", "db has no value"},
		{"RepeatedParam", "redis://127.0.0.1:7450?ttl=1h&ttl=2h", "given twice"},
		{"EmptyParamName", "redis://127.0.0.1:7450?=" + s, "without a name"},
		// skip_verify where there is no TLS (19.6).
		{"SkipVerifyWithoutTLS", "redis://u:" + s + "@127.0.0.1:7450?skip_verify=true", "TLS connections only"},
		{"SkipVerifyClusterWithoutTLS", "redis+cluster://127.0.0.1:7450?skip_verify=true", "TLS connections only"},
		{"SkipVerifySentinelWithoutTLS", "redis+sentinel://127.0.0.1:7450/m?skip_verify=true", "TLS connections only"},
		{"SkipVerifyRedlockWithoutTLS", "redlock://127.0.0.1:1,127.0.0.1:2,127.0.0.1:3?skip_verify=true", "TLS connections only"},
		{"TLSServerNameWithoutTLS", "redis://127.0.0.1:7450?tls_server_name=x", "TLS connections only"},
		{"SkipVerifyNotBool", "rediss://u:" + s + "@127.0.0.1:7450?skip_verify=yes", "true or false"},
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // nothing may be dialled
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, err := dlock.Open(ctx, c.url, nil)
			if err == nil {
				l.Close()
				t.Fatalf("Open(%q) succeeded", c.url)
			}
			if !errors.Is(err, dlock.ErrInvalid) {
				t.Errorf("Open(%q) = %v; want an error wrapping ErrInvalid, found before any I/O", c.url, err)
			}
			if !strings.Contains(err.Error(), c.says) {
				t.Errorf("Open(%q) = %v; want it to say %q", c.url, err, c.says)
			}
			if strings.Contains(err.Error(), planted) {
				t.Errorf("Open(%q) error shows the secret: %v", c.url, err)
			}
			if r := driver.RedactURL(c.url); strings.Contains(r, planted) {
				t.Errorf("RedactURL(%q) = %q shows the secret", c.url, r)
			}
		})
	}
}

// FuzzOpenURL plants a secret in the user, the password or a query value
// of a URL and asserts that neither Open's error nor RedactURL shows it.
// The pieces are put together without escaping, so the fuzzer tries the
// '/', '?', '#', '@', ':', ';' and '%' that people leave in passwords.
func FuzzOpenURL(f *testing.F) {
	for _, scheme := range []string{"redis", "rediss", "redis+cluster", "rediss+sentinel", "redlock", "redlocks", "mem", "nosuch"} {
		f.Add(scheme, "/0", "password", "", uint8(0))
		f.Add(scheme, "/m", "pw", "/", uint8(1))
		f.Add(scheme, "", "ttl", "?", uint8(2))
		f.Add(scheme, "/0", "sentinel_password", "#@", uint8(1))
		f.Add(scheme, "/%zz", "auth", ";x=", uint8(2))
	}
	f.Add("redis", "", "ttl", ":", uint8(3))
	f.Fuzz(func(t *testing.T, scheme, path, param, middle string, where uint8) {
		secret := "Zq9" + middle + "Zq9" // markers that no message contains by chance
		user, pass, value := "alice", "pass-word", "1s"
		switch where % 4 {
		case 0:
			user = secret
		case 1:
			pass = secret
		case 2:
			if public(param) || strings.ContainsAny(param, "&;") {
				// A documented setting's value is shown by design; with
				// '&' the value may be that of another, public setting.
				return
			}
			value = secret
		case 3:
			user, pass = "", secret // scheme-less forms come from the path
		}
		hosts := "127.0.0.1:1"
		if strings.HasPrefix(scheme, "redlock") {
			hosts = "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"
		}
		raw := scheme + "://" + user + ":" + pass + "@" + hosts + path + "?" + param + "=" + value
		if where%4 == 3 {
			raw = scheme + ":" + pass + "@" + hosts + path
		}
		checkNoSecret(t, raw, secret)
	})
}

// checkNoSecret opens raw, if it cannot dial beyond loopback, with a
// cancelled context and checks that the error does not show secret, as
// written or %-decoded.
func checkNoSecret(t *testing.T, raw, secret string) {
	forms := []string{secret}
	for _, unescape := range []func(string) (string, error){url.PathUnescape, url.QueryUnescape} {
		if d, err := unescape(secret); err == nil && d != secret {
			forms = append(forms, d)
		}
	}
	for _, f := range forms[1:] {
		t.Run("decoded", func(t *testing.T) { checkNoSecretText(t, raw, f) })
	}
	checkNoSecretText(t, raw, secret)
}

// checkNoSecretText is checkNoSecret for one form of the secret.
func checkNoSecretText(t *testing.T, raw, secret string) {
	if r := driver.RedactURL(raw); strings.Contains(r, secret) {
		t.Fatalf("RedactURL(%q) = %q shows the secret", raw, r)
	}
	if u, _, err := driver.ParseURL(raw); err == nil && u.Scheme != "mem" {
		hosts, err := driver.HostList(u, "6379")
		for _, h := range hosts {
			host, _, _ := net.SplitHostPort(h)
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return // never dial out of 127.0.0.0/8
			}
		}
		if err != nil {
			return
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	timer := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("Open(%q) with a cancelled context still runs after 10s", raw)) })
	l, err := dlock.Open(ctx, raw, nil)
	timer.Stop()
	if err == nil {
		l.Close()
		return
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("Open(%q) error shows the secret: %v", raw, err)
	}
}

// public reports whether RedactURL shows the values of param.
func public(param string) bool {
	return strings.HasSuffix(driver.RedactURL("x://h?"+url.QueryEscape(param)+"=v"), "=v")
}
