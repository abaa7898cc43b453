package dlock_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

type recorder struct {
	mu     sync.Mutex
	events []dlock.Event
}

func (r *recorder) Observe(_ context.Context, e dlock.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, e := range r.events {
		if len(s) == 0 || s[len(s)-1] != e.Kind.String() {
			s = append(s, e.Kind.String()) // runs of one kind count once
		}
	}
	return s
}

// TestObserverAndLog follows a lease through grant, busy, renewals, failing
// renewals, loss and release, and checks the events and log lines, which
// must never show the token.
func TestObserverAndLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		var logs bytes.Buffer
		store := memdriver.NewStore()
		fault := &refreshFault{Locker: store.Driver()}
		l := dlock.New(fault, &dlock.Options{
			TTL: 3 * time.Second, Owner: "w1", Observer: &rec,
			Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		})
		defer l.Close()

		lease, err := l.Acquire(t.Context(), "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.TryAcquire(t.Context(), "k", nil); !errors.Is(err, dlock.ErrNotAcquired) {
			t.Fatalf("TryAcquire of a held key = %v", err)
		}
		time.Sleep(2500 * time.Millisecond) // two renewals
		fault.failWith(driver.ErrUnavailable)
		<-lease.Done()
		synctest.Wait()
		lease.Release(t.Context())

		want := []string{"granted", "busy", "not_acquired", "refreshed", "refresh_failed", "lost", "released"}
		if got := rec.kinds(); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("events %v; want %v", got, want)
		}
		for _, e := range rec.events {
			if e.Key != "k" || e.Owner != "w1" {
				t.Errorf("event %v has key %q owner %q; want k, w1", e.Kind, e.Key, e.Owner)
			}
			if e.Kind == dlock.EventLost && (!errors.Is(e.Err, dlock.ErrLeaseLost) || e.Fence != lease.Fence() || e.Duration < 2*time.Second) {
				t.Errorf("lost event %+v; want ErrLeaseLost, the fence and the time held", e)
			}
		}
		out := logs.String()
		if !strings.Contains(out, "lease lost") || !strings.Contains(out, "lease refresh failing") || !strings.Contains(out, "owner=w1") {
			t.Errorf("log lacks the loss warning or the refresh failures:\n%s", out)
		}
		if strings.Contains(out, "refreshed") || strings.Contains(out, "granted") {
			t.Errorf("log mentions successful operations:\n%s", out)
		}
		if strings.Contains(out, lease.Token()) {
			t.Errorf("log shows the token:\n%s", out)
		}
	})
}
