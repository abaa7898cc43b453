package dlockotel_test

import (
	"context"
	"testing"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/dlockotel"
	"github.com/dlock-go/dlock/memdriver"
)

// TestSemaphoreLimitAttribute: the spans of a semaphore's leases carry
// its limit; a lock's carry none.
func TestSemaphoreLimitAttribute(t *testing.T) {
	tm := newTelemetry(t, dlockotel.Options{})
	l := memdriver.New(&dlock.Options{Observer: tm.obs.Observe})
	defer l.Close()
	ctx := context.Background()
	le, err := l.Acquire(ctx, "sem", &dlock.LeaseOptions{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	le.Release(ctx)
	lock, err := l.Acquire(ctx, "lock", nil)
	if err != nil {
		t.Fatal(err)
	}
	lock.Release(ctx)
	spans := tm.spanNamed("dlock.acquire")
	if len(spans) != 2 {
		t.Fatalf("%d acquire spans; want 2", len(spans))
	}
	if v, ok := spanAttrs(spans[0])[dlockotel.AttrLimit]; !ok || v.AsInt64() != 3 {
		t.Errorf("the semaphore's acquire span has limit %v; want 3", v.Emit())
	}
	if v, ok := spanAttrs(spans[1])[dlockotel.AttrLimit]; ok {
		t.Errorf("the lock's acquire span has limit %v; want none", v.Emit())
	}
}
