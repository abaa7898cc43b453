package redistest_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestStandalone(t *testing.T) {
	s := redistest.Start(t)
	if err := s.Client(t).Ping(ctx(t)).Err(); err != nil {
		t.Fatal(err)
	}
	if h, _, _ := net.SplitHostPort(s.Addr()); h != "127.0.0.1" && h != "localhost" {
		t.Errorf("address %s is not loopback", s.Addr())
	}
}

func TestRestartIsEmptyOnSamePort(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	c := s.Client(t)
	if err := c.Set(ctx(t), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	s.Restart(t)
	if s.Addr() != addr {
		t.Errorf("restart moved %s to %s", addr, s.Addr())
	}
	if err := c.Get(ctx(t), "k").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("after restart GET k = %v, want redis.Nil (empty server)", err)
	}
	s.Kill(t)
	if err := c.Ping(ctx(t)).Err(); err == nil {
		t.Error("PING after Kill succeeded")
	}
}

func TestTLSAndACL(t *testing.T) {
	s := redistest.StartTLS(t)
	if err := s.Client(t).Ping(ctx(t)).Err(); err != nil {
		t.Fatalf("TLS client with full user: %v", err)
	}
	o := s.Options()
	o.TLSConfig = nil
	plain := redis.NewClient(o)
	defer plain.Close()
	if err := plain.Ping(ctx(t)).Err(); err == nil {
		t.Error("plain-text PING to a TLS-only server succeeded")
	}
	o = s.Options()
	o.Username, o.Password = redistest.RestrictedUser.Username, redistest.RestrictedUser.Password
	r := redis.NewClient(o)
	defer r.Close()
	if err := r.Eval(ctx(t), "return 1", nil).Err(); !redis.IsPermissionError(err) {
		t.Errorf("restricted user EVAL: %v, want NOPERM", err)
	}
}

func TestCluster(t *testing.T) {
	start := time.Now()
	c := redistest.SharedCluster(t)
	t.Logf("cluster ready in %v", time.Since(start))
	cl := c.Client(t)
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		if err := cl.Set(ctx(t), k, 1, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.Addrs()) != 3 {
		t.Errorf("%d masters, want 3", len(c.Addrs()))
	}
}

func TestSentinel(t *testing.T) {
	start := time.Now()
	s := redistest.SharedSentinel(t)
	t.Logf("sentinel ready in %v", time.Since(start))
	c := s.Client(t)
	if err := c.Set(ctx(t), "k", "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx(t), "k").Err(); err != nil {
		t.Fatal(err)
	}
}

func TestProxy(t *testing.T) {
	s := redistest.Shared(t)
	px := redistest.NewProxy(t, s.Addr())
	o := s.Options()
	o.Addr = px.Addr()
	o.ReadTimeout = 200 * time.Millisecond
	o.MaxRetries = -1
	c := redis.NewClient(o)
	defer c.Close()
	if err := c.Ping(ctx(t)).Err(); err != nil {
		t.Fatal(err)
	}

	px.Partition()
	err := c.Ping(ctx(t)).Err()
	var te interface{ Timeout() bool }
	if !errors.As(err, &te) || !te.Timeout() {
		t.Errorf("PING during partition: %v, want a timeout", err)
	}
	px.Heal()
	if err := c.Ping(ctx(t)).Err(); err != nil {
		t.Fatalf("PING after heal: %v", err)
	}

	px.Latency(300 * time.Millisecond)
	if err := c.Ping(ctx(t)).Err(); err == nil {
		t.Error("PING with 300ms latency and 200ms read timeout succeeded")
	}
	px.Heal()

	px.Disconnect()
	if err := c.Ping(ctx(t)).Err(); err == nil {
		t.Error("PING while disconnected succeeded")
	}
	px.Heal()
	if err := c.Ping(ctx(t)).Err(); err != nil {
		t.Fatalf("PING after heal: %v", err)
	}
}

// TestServerBinary checks that the processes run the server that
// DLOCK_REDIS_SERVER names, so that a CI run on Valkey really is one.
func TestServerBinary(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	info, err := s.Client(t).Info(ctx(t), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	isValkey := strings.Contains(info, "valkey_version:")
	switch name := redistest.ServerName(); {
	case strings.HasPrefix(name, "valkey") && !isValkey:
		t.Errorf("%s=%s but the server is not Valkey: %s", redistest.EnvServer, name, info)
	case !strings.HasPrefix(name, "valkey") && isValkey:
		t.Errorf("server is %s but Valkey answered", name)
	}
}
