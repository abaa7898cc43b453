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

// refreshKeys is how many leases the refresh benchmarks take turns on: a
// key is renewed again only after the others, milliseconds later, as a
// renewer does it, not within the millisecond of its last renewal (PTTL's
// unit), which would hide the cost of re-arming expiries.
const refreshKeys = 256

// BenchmarkRefresh is one driver Refresh of a held lock: one round trip,
// what every renewal costs. The server's share shows in INFO
// commandstats (cmdstat_evalsha and the commands the script runs).
func BenchmarkRefresh(b *testing.B) {
	d := redisdriver.NewDriver(redistest.Shared(b).Client(b), nil)
	defer d.Close()
	ctx := context.Background()
	reqs := make([]driver.Request, refreshKeys)
	for i := range reqs {
		reqs[i] = driver.Request{Key: "bench/" + rand.Text(), Token: rand.Text(), TTL: 10 * time.Second, Owner: "bench"}
		if res, err := d.Acquire(ctx, reqs[i]); err != nil || !res.Acquired {
			b.Fatal(err, res)
		}
	}
	refreshInTurn(b, reqs, func(r driver.Request) error { return d.Refresh(ctx, r.Key, r.Token, r.TTL) })
}

// BenchmarkSemaphoreRefresh is BenchmarkRefresh for slots of semaphores
// with limit 8 and 3 other holders.
func BenchmarkSemaphoreRefresh(b *testing.B) {
	d := redisdriver.NewDriver(redistest.Shared(b).Client(b), nil).(interface {
		driver.Locker
		driver.Semaphore
	})
	defer d.Close()
	ctx := context.Background()
	const limit = 8
	reqs := make([]driver.Request, refreshKeys)
	for i := range reqs {
		key := "bench/" + rand.Text()
		for range 3 {
			if res, err := d.AcquireSlot(ctx, driver.Request{Key: key, Token: rand.Text(), TTL: time.Minute, Owner: "other"}, limit); err != nil || !res.Acquired {
				b.Fatal(err, res)
			}
		}
		reqs[i] = driver.Request{Key: key, Token: rand.Text(), TTL: 10 * time.Second, Owner: "bench"}
		if res, err := d.AcquireSlot(ctx, reqs[i], limit); err != nil || !res.Acquired {
			b.Fatal(err, res)
		}
	}
	refreshInTurn(b, reqs, func(r driver.Request) error { return d.RefreshSlot(ctx, r.Key, r.Token, r.TTL) })
}

// refreshInTurn is the benchmark loop: refresh each of reqs in turn.
func refreshInTurn(b *testing.B, reqs []driver.Request, refresh func(driver.Request) error) {
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := refresh(reqs[i%len(reqs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
