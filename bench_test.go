package dlock_test

import (
	"context"
	"testing"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/memdriver"
)

type nopObserver struct{}

func (nopObserver) Observe(context.Context, dlock.Event) {}

// BenchmarkPair measures the library's own cost of a try-acquire + release
// pair on the in-memory backend, with and without an observer, so the cost
// of the hook shows, and of Do (acquire, run, release).
func BenchmarkPair(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts *dlock.Options
	}{
		{"NoObserver", nil},
		{"Observer", &dlock.Options{Observer: nopObserver{}.Observe}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := memdriver.New(bc.opts)
			defer l.Close()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				lease, err := l.TryAcquire(ctx, "bench", nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := lease.Release(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("Do", func(b *testing.B) {
		l := memdriver.New(nil)
		defer l.Close()
		ctx := context.Background()
		noop := func(context.Context, *dlock.Lease) error { return nil }
		b.ReportAllocs()
		for b.Loop() {
			if err := l.Do(ctx, "bench", nil, noop); err != nil {
				b.Fatal(err)
			}
		}
	})
}
