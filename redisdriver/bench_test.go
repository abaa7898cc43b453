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
	"github.com/redis/go-redis/v9"
)

// BenchmarkPing is the baseline: one round trip to the same server.
func BenchmarkPing(b *testing.B) {
	c := redistest.Shared(b).Client(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Ping(ctx).Err(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAcquireRelease is one driver acquire and one release: two round
// trips, so about twice BenchmarkPing.
func BenchmarkAcquireRelease(b *testing.B) {
	c := redistest.Shared(b).Client(b)
	d := redisdriver.NewDriver(c, nil)
	defer d.Close()
	ctx := context.Background()
	req := driver.Request{Key: "bench/" + rand.Text(), Token: rand.Text(), TTL: 10 * time.Second, Owner: "bench"}
	b.ReportAllocs()
	for b.Loop() {
		res, err := d.Acquire(ctx, req)
		if err != nil || !res.Acquired {
			b.Fatal(err, res)
		}
		if err := d.Release(ctx, req.Key, req.Token); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLockerAcquireRelease is the same pair through dlock.Locker, with
// its lease bookkeeping, with fences and without (DisableFencing).
func BenchmarkLockerAcquireRelease(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts *dlock.Options
	}{{"Fenced", nil}, {"NoFence", &dlock.Options{LeaseOptions: dlock.LeaseOptions{DisableFencing: true}}}} {
		b.Run(bc.name, func(b *testing.B) {
			c := redistest.Shared(b).Client(b)
			l := mustNew(b, c, &redisdriver.Options{Lock: bc.opts})
			defer l.Close()
			ctx := context.Background()
			key := "bench/" + rand.Text()
			b.ReportAllocs()
			for b.Loop() {
				lease, err := l.TryAcquire(ctx, key, nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := lease.Release(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHandoff measures the time from a holder's release to the grant
// of a waiter blocked on the key (subscribed, with no polling of its own):
// the release's round trip, the pub/sub message and the waiter's acquire.
func BenchmarkHandoff(b *testing.B) {
	s := redistest.Shared(b)
	admin := s.Client(b)
	newL := func() *dlock.Locker {
		c := redis.NewClient(s.Options())
		b.Cleanup(func() { c.Close() })
		l := mustNew(b, c, nil)
		b.Cleanup(func() { l.Close() })
		return l
	}
	holderL, waiterL := newL(), newL()
	ctx := context.Background()
	key := "bench/handoff/" + rand.Text()
	opts := &dlock.LeaseOptions{TTL: 30 * time.Second, Retry: noPolling}
	lease, err := holderL.TryAcquire(ctx, key, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		l := waiterL
		if i%2 == 1 {
			l = holderL
		}
		got := goAcquire(ctx, l, key, opts)
		waitSubscribed(b, admin, key)
		b.StartTimer()
		if err := lease.Release(ctx); err != nil {
			b.Fatal(err)
		}
		a := <-got
		if a.err != nil {
			b.Fatal(a.err)
		}
		lease = a.lease
	}
	b.StopTimer()
	lease.Release(ctx)
}

// BenchmarkHandoffExpiry measures how late a waiter is granted a key whose
// holder vanished (no release), after the holder's expiry; the metric is
// µs-late/op. Each op lasts at least the holder's 20ms TTL.
func BenchmarkHandoffExpiry(b *testing.B) {
	s := redistest.Shared(b)
	d := redisdriver.NewDriver(s.Client(b), nil)
	defer d.Close()
	c := redis.NewClient(s.Options())
	defer c.Close()
	waiter := mustNew(b, c, nil)
	defer waiter.Close()
	ctx := context.Background()
	key := "bench/expiry/" + rand.Text()
	const ttl = 20 * time.Millisecond
	opts := &dlock.LeaseOptions{Retry: noPolling}
	var late time.Duration
	b.ReportAllocs()
	for b.Loop() {
		sent := time.Now()
		res, err := d.Acquire(ctx, driver.Request{Key: key, Token: rand.Text(), TTL: ttl, Owner: "vanished"})
		if err != nil || !res.Acquired {
			b.Fatal(err, res)
		}
		lease, err := waiter.Acquire(ctx, key, opts)
		if err != nil {
			b.Fatal(err)
		}
		late += time.Since(sent.Add(ttl))
		lease.Release(ctx)
	}
	b.ReportMetric(float64(late.Microseconds())/float64(b.N), "µs-late/op")
}
