package redisdriver_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/internal/redisurl"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// secret is the password in test URLs; no error may show it.
const secret = "hunter2-s3cret"

func noSecret(t *testing.T, err error, secrets ...string) {
	t.Helper()
	for _, s := range append(secrets, secret) {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error shows the password %q: %v", s, err)
		}
	}
}

// roundTrip takes and releases a key through l.
func roundTrip(t *testing.T, l *dlock.Locker) {
	t.Helper()
	ctx := testCtx(t)
	lease, err := l.TryAcquire(ctx, "open/"+t.Name(), nil)
	if err != nil {
		t.Fatalf("TryAcquire: %v", err)
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

func open(t *testing.T, rawURL string) *dlock.Locker {
	t.Helper()
	l, err := dlock.Open(testCtx(t), rawURL, nil)
	if err != nil {
		t.Fatalf("Open(%s): %v", rawURL, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestOpenStandalone(t *testing.T) {
	s := redistest.Shared(t)
	l := open(t, "redis://"+s.Addr()+"/0?prefix=opentest:&fence_expiry=1h&ttl=5s&dial_timeout=1s&pool_size=4")
	roundTrip(t, l)
	// The prefix reached the driver.
	ctx := testCtx(t)
	lease, err := l.TryAcquire(ctx, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release(ctx)
	if n := s.Client(t).Exists(ctx, "opentest:{k}").Val(); n != 1 {
		t.Errorf("lock key opentest:{k} missing: prefix parameter not applied")
	}
}

func TestOpenTLSWithACLUser(t *testing.T) {
	s := redistest.SharedTLS(t)
	u := fmt.Sprintf("rediss://%s:%s@%s?skip_verify=true", redistest.FullUser.Username, redistest.FullUser.Password, s.Addr())
	roundTrip(t, open(t, u))
}

func TestOpenCluster(t *testing.T) {
	c := redistest.SharedCluster(t)
	roundTrip(t, open(t, "redis+cluster://"+strings.Join(c.Addrs(), ",")+"?read_timeout=2s"))
}

func TestOpenSentinel(t *testing.T) {
	s := redistest.SharedSentinel(t)
	roundTrip(t, open(t, "redis+sentinel://"+strings.Join(s.Addrs(), ",")+"/"+s.MasterName()+"?dial_timeout=2s"))
}

func TestOpenClosesItsClient(t *testing.T) {
	s := redistest.Shared(t)
	l, err := dlock.Open(testCtx(t), "redis://"+s.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// goleak in TestMain fails the package if the client's goroutines
	// were left running.
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestOpenBadConfiguration: each mistake is reported at Open, clearly,
// within the context's time, and without the password.
func TestOpenBadConfiguration(t *testing.T) {
	acl := redistest.SharedTLS(t)
	plain := redistest.Shared(t)
	tests := []struct {
		name   string
		url    string
		is     error  // the error must wrap it
		says   string // and say this
		within time.Duration
	}{
		{"UnreachableAddress", "redis://user:" + secret + "@" + closedPort(t) + "?dial_timeout=200ms",
			dlock.ErrUnavailable, "connection refused", 5 * time.Second},
		{"WrongPassword", fmt.Sprintf("rediss://%s:%s@%s?skip_verify=true", redistest.FullUser.Username, secret, acl.Addr()),
			nil, "authentication failed", 5 * time.Second},
		{"MissingACLPermission", fmt.Sprintf("rediss://%s:%s@%s?skip_verify=true", redistest.RestrictedUser.Username, redistest.RestrictedUser.Password, acl.Addr()),
			nil, "lacks a permission", 5 * time.Second},
		{"NoTLSToTLSServer", "redis://" + acl.Addr() + "?dial_timeout=1s&read_timeout=1s",
			nil, "", 5 * time.Second},
		{"UnknownParameter", "redis://user:" + secret + "@" + plain.Addr() + "?pool_size=2&lock_timeout=3s",
			dlock.ErrInvalid, "unknown URL parameter lock_timeout", time.Second},
		{"PasswordInQuery", "redis+sentinel://127.0.0.1:1/m?password=" + secret,
			dlock.ErrInvalid, "unknown URL parameter password", time.Second},
		{"MalformedURL", "redis://user:" + secret + "@127.0.0.1:port/0",
			dlock.ErrInvalid, "malformed URL", time.Second},
		{"MalformedDB", "redis://user:" + secret + "@" + plain.Addr() + "/zero",
			dlock.ErrInvalid, "invalid database number", time.Second},
		{"MalformedPath", "redis://user:" + secret + "@" + plain.Addr() + "/0/1",
			dlock.ErrInvalid, "invalid URL path", time.Second},
		{"BadParameterValue", "redis://user:" + secret + "@" + plain.Addr() + "?dial_timeout=soon",
			dlock.ErrInvalid, "dial_timeout", time.Second},
		{"BadLockParameter", "redis://user:" + secret + "@" + plain.Addr() + "?fence_expiry=-1s",
			dlock.ErrInvalid, "fence_expiry", time.Second},
		{"BracesInPrefix", "redis://user:" + secret + "@" + plain.Addr() + "?prefix=" + url.QueryEscape("a{b}"),
			dlock.ErrInvalid, "hash tag", time.Second},
		{"SentinelWithoutMaster", "redis+sentinel://user:" + secret + "@127.0.0.1:1",
			dlock.ErrInvalid, "MASTER_NAME", time.Second},
		{"ClusterWithPath", "redis+cluster://user:" + secret + "@127.0.0.1:1,127.0.0.1:2/3",
			dlock.ErrInvalid, "no path", time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tt.within)
			defer cancel()
			start := time.Now()
			l, err := dlock.Open(ctx, tt.url, nil)
			if err == nil {
				l.Close()
				t.Fatalf("Open(%s) succeeded", tt.url)
			}
			t.Logf("error: %v", err)
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error does not wrap %v", tt.is)
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("error does not say %q", tt.says)
			}
			if el := time.Since(start); el > tt.within {
				t.Errorf("Open took %v, more than %v", el, tt.within)
			}
			noSecret(t, err)
		})
	}
}

func TestOpenHonoursContext(t *testing.T) {
	// A server that accepts connections and never answers.
	s := redistest.Shared(t)
	px := redistest.NewProxy(t, s.Addr())
	px.Partition()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	l, err := dlock.Open(ctx, "redis://user:"+secret+"@"+px.Addr()+"?read_timeout=30s", nil)
	if err == nil {
		l.Close()
		t.Fatal("Open through a partition succeeded")
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("Open took %v with a 300ms context", el)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
	noSecret(t, err)
}

// schemeKinds are the schemes of this package and the kind of client each
// opens, as the parameter table names them.
var schemeKinds = []struct {
	scheme string
	kind   redisurl.Kind
	tls    bool
}{
	{redisdriver.Scheme, redisurl.Standalone, false},
	{redisdriver.SchemeTLS, redisurl.Standalone, true},
	{redisdriver.SchemeCluster, redisurl.Cluster, false},
	{redisdriver.SchemeClusterTLS, redisurl.Cluster, true},
	{redisdriver.SchemeSentinel, redisurl.Sentinel, false},
	{redisdriver.SchemeSentinelTLS, redisurl.Sentinel, true},
}

// TestDocumentedParams opens every documented parameter on every scheme
// the table names it for (issue 19.7): against real servers where the
// tests have them (standalone, TLS, Cluster, Sentinel), and without I/O
// for TLS Cluster and Sentinel. It also checks that the package doc
// lists every parameter of the table, and that a parameter is refused on
// the kinds the table does not name.
func TestDocumentedParams(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range redisurl.Params {
		if !strings.Contains(string(doc), p.Name) {
			t.Errorf("parameter %s is not in the package documentation", p.Name)
		}
	}
	base := map[string]string{}
	if !testing.Short() {
		tlsSrv := redistest.SharedTLS(t)
		base[redisdriver.Scheme] = "redis://" + redistest.Shared(t).Addr() + "/0?"
		base[redisdriver.SchemeTLS] = fmt.Sprintf("rediss://%s:%s@%s/0?", redistest.FullUser.Username, redistest.FullUser.Password, tlsSrv.Addr())
		base[redisdriver.SchemeCluster] = "redis+cluster://" + strings.Join(redistest.SharedCluster(t).Addrs(), ",") + "?"
		s := redistest.SharedSentinel(t)
		base[redisdriver.SchemeSentinel] = "redis+sentinel://" + strings.Join(s.Addrs(), ",") + "/" + s.MasterName() + "/0?"
	}
	offline := map[string]string{
		redisdriver.SchemeClusterTLS:  "rediss+cluster://u:" + secret + "@127.0.0.1:1,127.0.0.1:2?",
		redisdriver.SchemeSentinelTLS: "rediss+sentinel://u:" + secret + "@127.0.0.1:1/m/0?",
	}
	for _, sk := range schemeKinds {
		for _, p := range redisurl.Params {
			accepted := p.Kinds&sk.kind != 0 && (sk.tls || !p.TLSOnly)
			param := p.Name + "=" + url.QueryEscape(p.Example)
			if sk.tls && p.Name != redisurl.ParamSkipVerify {
				param += "&skip_verify=true" // the test CA is not trusted
			}
			t.Run(sk.scheme+"/"+p.Name, func(t *testing.T) {
				if b, ok := base[sk.scheme]; ok && accepted {
					roundTrip(t, open(t, b+param))
					return
				}
				b, ok := offline[sk.scheme]
				if !ok {
					b = offline[redisdriver.SchemeClusterTLS] // any URL: refused before I/O
				}
				raw := strings.Replace(b, redisdriver.SchemeClusterTLS+"://", sk.scheme+"://", 1) + param
				u, _, err := driver.ParseURL(raw)
				if err != nil {
					t.Fatal(err)
				}
				c, err := redisdriver.NewClientForTest(u)
				if c != nil {
					c.Close()
				}
				switch {
				case accepted && err != nil:
					t.Errorf("documented parameter %s refused on %s: %v", p.Name, sk.scheme, err)
				case !accepted && err == nil:
					t.Errorf("parameter %s accepted on %s, where the table does not name it", p.Name, sk.scheme)
				case err != nil && !errors.Is(err, dlock.ErrInvalid):
					t.Errorf("error %v does not wrap ErrInvalid", err)
				}
			})
		}
	}
}

// TestTLSServerNames: with TLS, a standalone server is verified under the
// URL's host name, and the servers a Cluster or a Sentinel client finds
// at run time each under its own address (an empty ServerName makes
// crypto/tls take it from the address dialled), never under the first
// seed's or Sentinel's name; tls_server_name sets one name for all, and
// skip_verify turns verification off (issue 19.6).
func TestTLSServerNames(t *testing.T) {
	tests := []struct {
		url        string
		serverName string
		skip       bool
	}{
		{"rediss://cache.example:6380/0", "cache.example", false},
		{"rediss://[::1]:6380", "::1", false},
		{"rediss+cluster://seed1.example:7000,seed2.example:7001", "", false},
		{"rediss+sentinel://sentinel1.example:26379,sentinel2.example:26379/mymaster", "", false},
		{"rediss+cluster://seed1.example:7000?tls_server_name=redis.internal", "redis.internal", false},
		{"rediss+sentinel://sentinel1.example/m?tls_server_name=redis.internal&skip_verify=true", "redis.internal", true},
		{"rediss://cache.example?skip_verify=1", "cache.example", true},
	}
	for _, tt := range tests {
		u, _, err := driver.ParseURL(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		c, err := redisdriver.NewClientForTest(u)
		if err != nil {
			t.Fatalf("%s: %v", tt.url, err)
		}
		var conf *tls.Config
		switch c := c.(type) {
		case *redis.Client:
			conf = c.Options().TLSConfig
		case *redis.ClusterClient:
			conf = c.Options().TLSConfig
		}
		c.Close()
		if conf == nil {
			t.Errorf("%s: no TLS configuration", tt.url)
			continue
		}
		if conf.ServerName != tt.serverName || conf.InsecureSkipVerify != tt.skip || conf.MinVersion < tls.VersionTLS12 {
			t.Errorf("%s: ServerName %q, InsecureSkipVerify %v, MinVersion %x; want %q, %v, TLS 1.2+",
				tt.url, conf.ServerName, conf.InsecureSkipVerify, conf.MinVersion, tt.serverName, tt.skip)
		}
	}
}

// FuzzOpenRedisURL plants a secret in the user, the password or a query
// value of an unescaped URL of each scheme, and checks that neither the
// URL parser nor the driver's option building shows it in an error. It
// makes clients (closed at once) but no round trip, and only for loopback
// hosts.
func FuzzOpenRedisURL(f *testing.F) {
	for _, sk := range schemeKinds {
		f.Add(sk.scheme, "/0", "password", "", uint8(0))
		f.Add(sk.scheme, "/m/0", "sentinel_password", "/", uint8(1))
		f.Add(sk.scheme, "", "pw", "?#", uint8(2))
		f.Add(sk.scheme, "/zero", "dial_timeout", ";x=", uint8(1))
	}
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
		raw := scheme + "://" + user + ":" + pass + "@127.0.0.1:1,127.0.0.1:2" + path + "?" + param + "=" + value
		u, _, err := driver.ParseURL(raw)
		if err != nil {
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("ParseURL(%q) error shows the secret: %v", raw, err)
			}
			return
		}
		hosts, _ := driver.HostList(u, "6379")
		for _, h := range hosts {
			if host, _, _ := net.SplitHostPort(h); net.ParseIP(host) == nil || !net.ParseIP(host).IsLoopback() {
				return // never dial out of 127.0.0.0/8
			}
		}
		c, err := redisdriver.NewClientForTest(u)
		if c != nil {
			c.Close()
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Fatalf("NewClient(%q) error shows the secret: %v", raw, err)
		}
	})
}

// minimalACL is the least ACL rule of the package doc (Permissions): the
// permissions the driver needs, and nothing else.
const minimalACL = "on >locker-secret-pw ~dlock:* &dlock:* +evalsha +eval +ping +subscribe +ssubscribe +wait " +
	"+get +set +del +exists +type +pttl +pexpire +time +zadd +zpopmin +zrem +zrangebyscore +zrange +zcount +zscore +hget +hset +hdel +unlink +publish +spublish " +
	"+pubsub|numsub +pubsub|shardnumsub"

// TestOpenMinimalACL: a user with exactly the package doc's permissions can
// open, take, wait for, inspect and release locks, with replica_acks.
func TestOpenMinimalACL(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	ctx := testCtx(t)
	admin := s.Client(t)
	if err := admin.Do(ctx, append([]any{"ACL", "SETUSER", "locker"}, toAny(strings.Fields(minimalACL))...)...).Err(); err != nil {
		t.Fatal(err)
	}
	l := open(t, "redis://locker:locker-secret-pw@"+s.Addr()+"/0?replica_acks=0")
	lease, err := l.TryAcquire(ctx, "acl", nil)
	if err != nil {
		t.Fatalf("TryAcquire: %v", err)
	}
	if _, ok, err := soleHolder(l.Holders(ctx, "acl")); err != nil || !ok {
		t.Errorf("Holder = %v, %v", ok, err)
	}
	got := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		w, err := l.Acquire(wctx, "acl", nil)
		if err == nil {
			err = w.Release(ctx)
		}
		got <- err
	}()
	if err := lease.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := <-got; err != nil {
		t.Errorf("waiter: %v", err)
	}
}

func toAny(s []string) []any {
	a := make([]any, len(s))
	for i, v := range s {
		a[i] = v
	}
	return a
}

// TestDocumentedParamGroups reads the go-redis parameter list of the
// package doc, group by group (every scheme, standalone, Cluster,
// Sentinel), and checks that each group names exactly the parameters the
// table gives to those schemes and no others.
func TestDocumentedParamGroups(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	start := strings.Index(text, "// go-redis client parameters")
	end := strings.Index(text, "// dlock.Open reads ttl")
	if start < 0 || end < start {
		t.Fatal("doc.go has no go-redis parameter list")
	}
	block := strings.NewReplacer("//\t", " ", "//", " ", "\n", " ").Replace(text[start:end])
	block = regexp.MustCompile(`\([^)]*\)`).ReplaceAllString(block, " ")
	groups := map[string]redisurl.Kind{
		"every scheme:":  redisurl.All,
		"redis, rediss:": redisurl.Standalone,
		"+cluster:":      redisurl.Cluster,
		"+sentinel:":     redisurl.Sentinel,
	}
	re := regexp.MustCompile(`(every scheme:|redis, rediss:|\+cluster:|\+sentinel:)`)
	idx := re.FindAllStringIndex(block, -1)
	if len(idx) != len(groups) {
		t.Fatalf("found %d groups in the doc's list; want %d", len(idx), len(groups))
	}
	for i, m := range idx {
		label := block[m[0]:m[1]]
		stop := len(block)
		if i+1 < len(idx) {
			stop = idx[i+1][0]
		}
		documented := map[string]bool{}
		for _, f := range strings.FieldsFunc(block[m[1]:stop], func(r rune) bool { return r == ',' || r == ' ' }) {
			documented[f] = true
		}
		kind := groups[label]
		for _, p := range redisurl.Params {
			if p.Name == redisurl.ParamSkipVerify || p.Name == redisurl.ParamTLSServerName ||
				p.Name == redisurl.ParamPrefix || p.Name == redisurl.ParamFenceExpiry ||
				p.Name == redisurl.ParamReplicaAcks || p.Name == redisurl.ParamReplicaTimeout {
				continue // documented in lists of their own
			}
			want := p.Kinds&kind != 0 && (kind == redisurl.All) == (p.Kinds == redisurl.All)
			if want != documented[p.Name] {
				t.Errorf("doc group %q lists %s: %v; the table says %v", label, p.Name, documented[p.Name], want)
			}
			delete(documented, p.Name)
		}
		for name := range documented {
			t.Errorf("doc group %q lists %s, which is not in the table", label, name)
		}
	}
}
