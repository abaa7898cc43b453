package redisdriver_test

import (
	"errors"
	"testing"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// mustNew is redisdriver.New that fails tb if New refuses c or o.
func mustNew(tb testing.TB, c redis.UniversalClient, o *redisdriver.Options) *dlock.Locker {
	tb.Helper()
	l, err := redisdriver.New(c, o)
	if err != nil {
		tb.Fatalf("redisdriver.New: %v", err)
	}
	return l
}

// TestNewRefusesClientWithoutContextTimeouts: a client whose options leave
// ContextTimeoutEnabled false ignores context deadlines, so a renewal
// could not give up before the lease's deadline; New refuses it with
// ErrInvalid, for standalone, Sentinel (a *redis.Client too) and Cluster
// clients. New accepted it silently before.
func TestNewRefusesClientWithoutContextTimeouts(t *testing.T) {
	for name, c := range map[string]redis.UniversalClient{
		"Standalone": redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}),
		"Cluster":    redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}),
	} {
		l, err := redisdriver.New(c, nil)
		if !errors.Is(err, dlock.ErrInvalid) || l != nil {
			t.Errorf("%s: New of a client without ContextTimeoutEnabled = %v, %v; want nil, ErrInvalid", name, l, err)
		}
		c.Close()
	}
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	defer c.Close()
	l, err := redisdriver.New(c, nil)
	if err != nil {
		t.Fatalf("New of a client with ContextTimeoutEnabled = %v", err)
	}
	l.Close()
	if _, err := redisdriver.New(nil, nil); !errors.Is(err, dlock.ErrInvalid) {
		t.Errorf("New(nil) = %v; want ErrInvalid", err)
	}
}
