package redlock_test

import (
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redlock"
	"github.com/redis/go-redis/v9"
)

// TestCloseOverCallerClientsBoundedByReadTimeout: a Locker over clients
// given to NewRedis, closed while an acquire's call waits on a node that
// went silent (a partition), returns once the client's ReadTimeout ends
// that read: Close cannot close the caller's clients, and a go-redis read
// ignores its context's cancellation. It is not bounded by the node
// timeout there (the acquire listens for the validity window, nearly the
// TTL of a minute), as Close's documentation says.
func TestCloseOverCallerClientsBoundedByReadTimeout(t *testing.T) {
	t.Parallel()
	nodes := startRedis(t, 3)
	const nodeTimeout, readTimeout = 100 * time.Millisecond, 700 * time.Millisecond
	clients := make([]redis.UniversalClient, len(nodes))
	proxies := make([]*redistest.Proxy, len(nodes))
	for i, srv := range nodes {
		proxies[i] = redistest.NewProxy(t, srv.Addr())
		o := srv.Options()
		o.Addr, o.MaxRetries, o.ReadTimeout = proxies[i].Addr(), -1, readTimeout
		c := redis.NewClient(o)
		t.Cleanup(func() { c.Close() })
		clients[i] = c
	}
	l, err := redlock.NewRedis(clients, &redlock.Options{NodeTimeout: nodeTimeout, DisableFencing: true, Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}}})
	if err != nil {
		t.Fatal(err)
	}
	proxies[2].Partition()
	if _, err := l.TryAcquire(t.Context(), "close-bound", nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if took, limit := time.Since(start), readTimeout+time.Second; took > limit {
		t.Errorf("Close took %v with one node partitioned and an acquire's call waiting on it; want the client's ReadTimeout %v at most, under %v", took, readTimeout, limit)
	}
}
