package redlock_test

import (
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/dlock-go/dlock/redlock"
)

// BenchmarkBusyAttempt is the contended path: a key held on nodes 0 and 1
// by another token, each attempt granted by node 2 alone, answered busy
// and undone there (three acquires and one release per attempt).
func BenchmarkBusyAttempt(b *testing.B) {
	ctx := b.Context()
	nodes := startRedis(b, 3)
	holder := driver.Request{Key: "busy-bench", Token: rand(), TTL: time.Hour, Owner: "holder"}
	for i := range 2 {
		d := redisdriver.NewDriver(nodes[i].Client(b), nil)
		defer d.Close()
		if res, err := d.Acquire(ctx, holder); err != nil || !res.Acquired {
			b.Fatalf("node %d: Acquire = %+v, %v", i, res, err)
		}
	}
	d := nodes.driver(b, &redlock.Options{DisableFencing: true})
	defer d.Close()
	b.ReportAllocs()
	for b.Loop() {
		if res, err := d.Acquire(ctx, driver.Request{Key: holder.Key, Token: rand(), TTL: time.Minute, Owner: "bench"}); err != nil || res.Acquired {
			b.Fatalf("Acquire = %+v, %v; want busy", res, err)
		}
	}
}
