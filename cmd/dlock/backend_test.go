//go:build unix

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
)

// TestRedisFlagsKeepURLStrict: --ttl and --owner do not re-encode the URL,
// so a query the library refuses (a ';' that Go's url.Query drops, taking
// replica_acks=2 with it) is still refused, with the usage status and
// without the password, instead of opening with the safeguard off.
func TestRedisFlagsKeepURLStrict(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	const pw = "pw-s3cret"
	rawURL := "redis://default:" + pw + "@" + srv.Addr() + "/?replica_acks=2;x"
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"RunTTL", []string{"run", "--url", rawURL, "--ttl", "2s", "--key", "k", "--", "true"}},
		{"RunOwner", []string{"run", "--url", rawURL, "--owner", "me", "--key", "k", "--", "true"}},
		{"ElectTTL", []string{"elect", "--url", rawURL, "--ttl", "2s", "--key", "k", "--", "true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startDlock(t, "dlock", nil, tc.args...)
			if code := p.wait(t, 20*time.Second); code != exitUsage {
				t.Errorf("exit status %d, want %d (the URL's ';' must be refused); stderr:\n%s", code, exitUsage, p.stderr.String())
			}
			out := p.stdout.String() + p.stderr.String()
			if strings.Contains(out, pw) {
				t.Errorf("the password was printed:\n%s", out)
			}
			if !strings.Contains(p.stderr.String(), "';'") {
				t.Errorf("the message does not name the ';':\n%s", p.stderr.String())
			}
		})
	}
}

// TestFlagsOverURLInMessages: the TTL and owner that messages show are
// those in effect: the flags over the URL's parameters, the URL's over
// the defaults.
func TestFlagsOverURLInMessages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"Flags", []string{"--url", "mem://?ttl=1h&owner=url-owner", "--ttl", "2s", "--owner", "flag-owner"}, []string{"as flag-owner (TTL 2s)"}},
		{"URL", []string{"--url", "mem://?ttl=3s&owner=url-owner"}, []string{"as url-owner (TTL 3s)"}},
		{"GraceCut", []string{"--url", "mem://?ttl=1h", "--ttl", "3s", "--grace", "10s"}, []string{"more than a TTL of 3s allows", "(TTL 3s)"}},
		{"GraceCutURL", []string{"--url", "mem://?ttl=3s&renew=2s", "--grace", "10s"}, []string{"more than a TTL of 3s allows: if renewal fails, SIGTERM goes out 484ms before"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startDlock(t, "dlock elect", nil, append(append([]string{"elect", "--key", "k"}, tc.args...), "--", "true")...)
			if code := p.wait(t, 20*time.Second); code != 0 {
				t.Errorf("exit status %d, want 0; stderr:\n%s", code, p.stderr.String())
			}
			for _, want := range tc.want {
				if !strings.Contains(p.stderr.String(), want) {
					t.Errorf("stderr does not say %q:\n%s", want, p.stderr.String())
				}
			}
		})
	}
}
