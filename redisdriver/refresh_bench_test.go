package redisdriver_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
)

// BenchmarkRefresh is one driver Refresh of a held lock: one round trip,
// what every renewal costs. The server's share shows in INFO
// commandstats (cmdstat_evalsha).
func BenchmarkRefresh(b *testing.B) {
	d := redisdriver.NewDriver(redistest.Shared(b).Client(b), nil)
	defer d.Close()
	ctx := context.Background()
	req := driver.Request{Key: "bench/" + rand.Text(), Token: rand.Text(), TTL: 10 * time.Second, Owner: "bench"}
	if res, err := d.Acquire(ctx, req); err != nil || !res.Acquired {
		b.Fatal(err, res)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Refresh(ctx, req.Key, req.Token, req.TTL); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSemaphoreRefresh is BenchmarkRefresh for a slot of a semaphore
// with limit 8 and 3 other holders.
func BenchmarkSemaphoreRefresh(b *testing.B) {
	d := redisdriver.NewDriver(redistest.Shared(b).Client(b), nil).(interface {
		driver.Locker
		driver.Semaphore
	})
	defer d.Close()
	ctx := context.Background()
	const limit = 8
	key := "bench/" + rand.Text()
	for range 3 {
		if res, err := d.AcquireSlot(ctx, driver.Request{Key: key, Token: rand.Text(), TTL: time.Minute, Owner: "other"}, limit); err != nil || !res.Acquired {
			b.Fatal(err, res)
		}
	}
	req := driver.Request{Key: key, Token: rand.Text(), TTL: 10 * time.Second, Owner: "bench"}
	if res, err := d.AcquireSlot(ctx, req, limit); err != nil || !res.Acquired {
		b.Fatal(err, res)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := d.RefreshSlot(ctx, req.Key, req.Token, req.TTL); err != nil {
			b.Fatal(err)
		}
	}
}
