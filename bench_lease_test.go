package dlock_test

import (
	"testing"

	"github.com/dlock-go/dlock/memdriver"
)

// BenchmarkLeaseLook measures a look at a valid lease, as a holder makes
// before each write: Err, Done, the context's Err, ValidUntil.
func BenchmarkLeaseLook(b *testing.B) {
	l := memdriver.New(nil)
	defer l.Close()
	lease, err := l.TryAcquire(b.Context(), "k", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer lease.Release(b.Context())
	ctx := lease.Context()
	for _, bc := range []struct {
		name string
		look func() bool
	}{
		{"Err", func() bool { return lease.Err() == nil }},
		{"Done", func() bool {
			select {
			case <-lease.Context().Done():
				return false
			default:
				return true
			}
		}},
		{"ContextErr", func() bool { return ctx.Err() == nil }},
		{"ValidUntil", func() bool { return !lease.ValidUntil().IsZero() }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !bc.look() {
					b.Fatal("lease ended")
				}
			}
		})
	}
}
