package redlock_test

import (
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/dlock-go/dlock/redlock"
)

// TestRedisLateUndosDoNotConvoy is TestLateUndosDoNotConvoy on three
// redis-server processes, node 2 behind a proxy that delays its replies by
// 100ms (the node timeout is 300ms): 20 busy attempts of a held key, each
// with a new token, then the holder leaves and node 1 is cut off. 1.5s
// later an attempt must be granted by nodes 0 and 2. Each attempt's
// acquire on node 2 waiting for the last attempt's undo there, which waits
// for its own acquire, kept node 2 busy with the polling's calls for 20
// times two of its round trips, 4s.
func TestRedisLateUndosDoNotConvoy(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	nodes := startRedis(t, 3)
	clients, proxies := nodes.proxied(t)
	d := nodes.driverOver(t, clients, &redlock.Options{DisableFencing: true, NodeTimeout: 300 * time.Millisecond})
	defer d.Close()
	key := "convoy-" + rand()
	holder := driver.Request{Key: key, Token: rand(), TTL: time.Minute, Owner: "holder"}
	direct := make([]driver.Locker, 2)
	for i := range direct {
		direct[i] = redisdriver.NewDriver(nodes[i].Client(t), nil)
		defer direct[i].Close()
		if res, err := direct[i].Acquire(ctx, holder); err != nil || !res.Acquired {
			t.Fatalf("node %d: Acquire = %+v, %v", i, res, err)
		}
	}
	proxies[2].Latency(100 * time.Millisecond)
	for k := range 20 {
		if res, err := d.Acquire(ctx, driver.Request{Key: key, Token: rand(), TTL: time.Minute, Owner: "poller"}); err != nil || res.Acquired {
			t.Fatalf("attempt %d = %+v, %v; want busy (nodes 0 and 1 held)", k, res, err)
		}
	}
	for i := range direct {
		if err := direct[i].Release(ctx, key, holder.Token); err != nil {
			t.Fatalf("node %d: Release = %v", i, err)
		}
	}
	proxies[1].Disconnect()
	time.Sleep(1500 * time.Millisecond) // every polling call has had seven of node 2's round trips
	start := time.Now()
	res, err := d.Acquire(ctx, driver.Request{Key: key, Token: rand(), TTL: time.Minute, Owner: "next"})
	if err != nil || !res.Acquired {
		t.Errorf("attempt with nodes 0 and 2 up and free, node 1 cut off, 1.5s after the polling ended = %+v, %v (after %v); want granted", res, err, time.Since(start))
	}
}
