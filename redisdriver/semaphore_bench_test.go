package redisdriver_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
)

// BenchmarkSlotAcquireRelease is BenchmarkAcquireRelease for a slot of a
// semaphore with limit 8 and 3 other holders: one AcquireSlot and one
// ReleaseSlot, two round trips.
func BenchmarkSlotAcquireRelease(b *testing.B) {
	c := redistest.Shared(b).Client(b)
	d := redisdriver.NewDriver(c, nil).(interface {
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
	b.ReportAllocs()
	for b.Loop() {
		res, err := d.AcquireSlot(ctx, req, limit)
		if err != nil || !res.Acquired {
			b.Fatal(err, res)
		}
		if err := d.ReleaseSlot(ctx, req.Key, req.Token); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSemaphoreAcquireRelease is BenchmarkLockerAcquireRelease for a
// semaphore's lease through dlock.
func BenchmarkSemaphoreAcquireRelease(b *testing.B) {
	c := redistest.Shared(b).Client(b)
	l := mustNew(b, c, nil)
	defer l.Close()
	ctx := context.Background()
	semKey, sem := "bench/"+rand.Text(), &dlock.LeaseOptions{Limit: 8}
	b.ReportAllocs()
	for b.Loop() {
		lease, err := l.TryAcquire(ctx, semKey, sem)
		if err != nil {
			b.Fatal(err)
		}
		if err := lease.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
