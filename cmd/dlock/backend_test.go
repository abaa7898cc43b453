//go:build unix

package main

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"

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

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestRedisSentinelDownFailsFast: with every Sentinel down, dlock fails
// with the unavailable status within about a dial, not after go-redis's
// nested retries (36s), and names the Sentinels and the cause; a Sentinel
// that does not know the master name says so, as fast.
func TestRedisSentinelDownFailsFast(t *testing.T) {
	t.Parallel()
	dead1, dead2 := deadAddr(t), deadAddr(t)
	live := redistest.SharedSentinel(t)
	for _, tc := range []struct {
		name string
		url  string
		code int
		want []string
	}{
		{"OneDead", "redis+sentinel://" + dead1 + "/mymaster", exitUnavailable, []string{"no Sentinel answered", dead1, "connection refused"}},
		{"AllDead", "redis+sentinel://" + dead1 + "," + dead2 + "/mymaster", exitUnavailable, []string{"no Sentinel answered", dead1, dead2}},
		{"UnknownMaster", "redis+sentinel://" + live.Addrs()[0] + "/no-such-master", exitUnavailable, []string{`does not know a master named "no-such-master"`}},
	} {
		for _, cmd := range [][]string{{"run", "--key", "k", "--", "true"}, {"status", "k"}} {
			t.Run(tc.name+"/"+cmd[0], func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				p := startDlock(t, "dlock", nil, append([]string{cmd[0], "--url", tc.url}, cmd[1:]...)...)
				code := p.wait(t, 60*time.Second)
				took := time.Since(start)
				if code != tc.code {
					t.Errorf("exit status %d, want %d; stderr:\n%s", code, tc.code, p.stderr.String())
				}
				if took > 5*time.Second {
					t.Errorf("dlock %s took %v to fail, want under 5s", cmd[0], took)
				}
				for _, want := range tc.want {
					if !strings.Contains(p.stderr.String(), want) {
						t.Errorf("stderr does not say %q:\n%s", want, p.stderr.String())
					}
				}
			})
		}
	}
}

// TestRedisClusterNodeBehindPlainURL: redis:// pointed at a node of a
// Redis Cluster is refused at open, whichever node and whatever key, with
// the usage status and a message that names the right scheme, before the
// command runs.
func TestRedisClusterNodeBehindPlainURL(t *testing.T) {
	t.Parallel()
	cl := redistest.SharedCluster(t)
	for i, addr := range cl.Addrs() {
		for _, cmd := range [][]string{{"run", "--key", "a", "--", "echo", "ran"}, {"status", "a"}} {
			t.Run(strconv.Itoa(i)+"/"+cmd[0], func(t *testing.T) {
				t.Parallel()
				p := startDlock(t, "dlock", nil, append([]string{cmd[0], "--url", "redis://" + addr}, cmd[1:]...)...)
				if code := p.wait(t, 20*time.Second); code != exitUsage {
					t.Errorf("exit status %d, want %d; stderr:\n%s", code, exitUsage, p.stderr.String())
				}
				if want := "this is a Redis Cluster node: use redis+cluster://"; !strings.Contains(p.stderr.String(), want) {
					t.Errorf("stderr does not say %q:\n%s", want, p.stderr.String())
				}
				if strings.Contains(p.stdout.String(), "ran") {
					t.Errorf("the command ran")
				}
			})
		}
	}
}

// TestRedisOneNodeMessages: counts of one read "1 node", not "1 nodes",
// and a library error inside a message does not repeat "dlock: ".
func TestRedisOneNodeMessages(t *testing.T) {
	t.Parallel()
	live := redistest.Shared(t).Addr()
	for _, tc := range []struct {
		name, url string
		want      string
	}{
		{"OneNode", "redlock://" + deadAddr(t), "a quorum needs at least 3 independent servers, got 1"},
		{"OneOfThree", "redlock://" + live + "," + deadAddr(t) + "," + deadAddr(t), "quorum not reached: succeeded on 1 of 3, 2 needed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startDlock(t, "dlock", nil, "status", "--url", tc.url, "k")
			p.wait(t, 20*time.Second)
			got := p.stderr.String()
			if !strings.Contains(got, tc.want) {
				t.Errorf("stderr does not say %q:\n%s", tc.want, got)
			}
			for _, bad := range []string{" 1 nodes", " 1 Redis clients", ": dlock: "} {
				if strings.Contains(got, bad) {
					t.Errorf("stderr says %q:\n%s", bad, got)
				}
			}
		})
	}
}

// TestRenewalRecoveredMessage: one failed renewal is "1 failure".
func TestRenewalRecoveredMessage(t *testing.T) {
	var buf syncBuffer
	r := &renewalLogger{lg: newCLILog("run", "text", false, &buf), renewed: make(chan struct{}, 1)}
	ctx := t.Context()
	r.Observe(ctx, dlock.Event{Kind: dlock.EventRefreshFailed, Key: "k", Err: errors.New("boom")})
	r.Observe(ctx, dlock.Event{Kind: dlock.EventRefreshed, Key: "k"})
	r.lg.close() // writes what is queued
	if got := buf.String(); !strings.Contains(got, "after 1 failure\n") {
		t.Errorf("log does not say %q:\n%s", "after 1 failure", got)
	}
}

// TestMalformedURLSaysWhat: a URL that does not parse is refused with the
// usage status and a message that says what is wrong with it, never a
// bare "malformed URL" or "cannot be parsed", and never the password.
func TestMalformedURLSaysWhat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, want string }{
		{"redis://u:pw-s3cret@[zz]:6379", "IPv6"},
		{"redis://u:pw-s3cret@[::1:6379", "IPv6"},
		{"redis://u:pw-s3cret@h:port", "port"},
		{"redis://u:pw-s3cret@h%zz:1", "%XX"},
		{"redis://u:pw-s3cret@h:1/%zz", "%XX"},
		{"redis://u:pw-s3cret@a b:1", "host name"},
		{"redis:u:pw-s3cret@h:1", "want SCHEME://"},
		{"redis://u:pw-s3cret@h:1#x", "fragment"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			t.Parallel()
			p := startDlock(t, "dlock", nil, "status", "--url", tc.url, "k")
			if code := p.wait(t, 20*time.Second); code != exitUsage {
				t.Errorf("exit status %d, want %d", code, exitUsage)
			}
			got := p.stderr.String()
			if !strings.Contains(got, tc.want) || strings.Contains(got, "cannot be parsed") || strings.HasSuffix(strings.TrimSpace(got), "malformed URL") {
				t.Errorf("stderr does not say what is malformed (%q):\n%s", tc.want, got)
			}
			if strings.Contains(got, "pw-s3cret") {
				t.Errorf("the password was printed:\n%s", got)
			}
		})
	}
}
