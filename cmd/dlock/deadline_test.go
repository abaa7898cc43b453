//go:build unix

package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
)

// staleObserver records, at each EventRefreshed, whether the lease's
// deadline (what dlock hands the guardian on that event) had moved.
type staleObserver struct {
	mu    sync.Mutex
	lease *dlock.Lease
	last  time.Time
	n     int
	stale int
	done  chan struct{} // closed at the wantRenewals-th renewal
}

const (
	wantRenewals = 200
	staleRenew   = 20 * time.Millisecond // the lease's renewal interval
	staleLife    = 58 * time.Millisecond // its TTL less the drift allowance
)

func (o *staleObserver) Observe(_ context.Context, e dlock.Event) {
	if e.Kind != dlock.EventRefreshed {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.lease == nil || e.Fence != o.lease.Fence() {
		return
	}
	v := o.lease.ValidUntil()
	o.n++
	// Stale: the deadline did not move, and it is about a renewal
	// interval short of the one this renewal set (sent+TTL-drift, with
	// sent no earlier than now less the renewal's round trip). An event
	// that an earlier, slow Observe call delayed may see the next
	// renewal's deadline twice: that one is not short.
	short := time.Until(v) < staleLife-e.Duration-staleRenew/2
	if !v.After(o.last) && short {
		o.stale++
	}
	o.last = v
	if o.n == wantRenewals {
		close(o.done)
	}
}

// TestRenewedDeadlineNotStale: when dlock learns of a confirmed renewal
// (EventRefreshed) it reads the lease's new deadline for the guardian. It
// must not read the one before the renewal: the guardian would then run a
// renewal behind, and with the default TTL, renewal interval and grace
// send SIGTERM to a job whose lease is fine.
func TestRenewedDeadlineNotStale(t *testing.T) {
	o := &staleObserver{done: make(chan struct{})}
	l, err := dlock.Open(t.Context(), "mem://stale-"+uniqueKey(t)+"?ttl=60ms&renew=20ms&drift=2ms", &dlock.Options{Observer: o.Observe})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	timeout := time.After(2 * time.Minute)
	for done := false; !done; {
		// A loaded machine may renew too late now and then: the lease is
		// lost, and the test goes on with a new one.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		le, err := l.Acquire(ctx, "k", nil)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		o.mu.Lock()
		o.lease, o.last = le, le.ValidUntil()
		o.mu.Unlock()
		select { // renewals every 20ms
		case <-o.done:
			done = true
		case <-le.Context().Done():
		case <-timeout:
			t.Fatalf("no %d renewals in 2 minutes", wantRenewals)
		}
		le.Release(context.Background())
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stale > 0 {
		t.Errorf("%d of %d renewals showed the deadline before them", o.stale, o.n)
	}
}
