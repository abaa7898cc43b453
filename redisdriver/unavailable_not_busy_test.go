package redisdriver_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	_ "github.com/dlock-go/dlock/redisdriver"
)

// acquireCalls are the three ways to take a key, each returning only the
// error; the lease, if any, is released.
func acquireCalls(l *dlock.Locker) map[string]func(ctx context.Context, key string) error {
	keep := func(lease *dlock.Lease, err error) error {
		if lease != nil {
			lease.Release(context.Background())
		}
		return err
	}
	return map[string]func(context.Context, string) error{
		"TryAcquire": func(ctx context.Context, key string) error { return keep(l.TryAcquire(ctx, key, nil)) },
		"Acquire":    func(ctx context.Context, key string) error { return keep(l.Acquire(ctx, key, nil)) },
		"Do": func(ctx context.Context, key string) error {
			return l.Do(ctx, key, nil, func(context.Context, *dlock.Lease) error { return nil })
		},
	}
}

// TestBackendDownIsNotBusy: against a Redis killed after Open, every way
// to acquire reports ErrUnavailable and never ErrNotAcquired, so that the
// idiom "if errors.Is(err, dlock.ErrNotAcquired) { skip }" does not skip
// the job silently for the whole outage. A waiting call whose deadline
// ends during the outage wraps DeadlineExceeded and ErrUnavailable.
func TestBackendDownIsNotBusy(t *testing.T) {
	srv := redistest.StartProcess(t, nil)
	l, err := dlock.Open(t.Context(), "redis://"+srv.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srv.Kill(t)
	for name, acquire := range acquireCalls(l) {
		ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
		err := acquire(ctx, "k")
		cancel()
		if errors.Is(err, dlock.ErrNotAcquired) || !errors.Is(err, dlock.ErrUnavailable) {
			t.Errorf("%s against a killed Redis = %v; want ErrUnavailable, not ErrNotAcquired", name, err)
		}
		if name != "TryAcquire" && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s against a killed Redis, its deadline passed = %v; want DeadlineExceeded in the chain too", name, err)
		}
	}
}

// TestBusyIsNotBackendDown: the opposite of TestBackendDownIsNotBusy: on
// a key held by someone else, every way to acquire reports ErrNotAcquired
// and never ErrUnavailable.
func TestBusyIsNotBackendDown(t *testing.T) {
	srv := redistest.Start(t)
	l, err := dlock.Open(t.Context(), "redis://"+srv.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	other, err := dlock.Open(t.Context(), "redis://"+srv.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	held, err := other.TryAcquire(t.Context(), "busy", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release(context.Background())
	for name, acquire := range acquireCalls(l) {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		err := acquire(ctx, "busy")
		cancel()
		if !errors.Is(err, dlock.ErrNotAcquired) || errors.Is(err, dlock.ErrUnavailable) {
			t.Errorf("%s of a held key = %v; want ErrNotAcquired, not ErrUnavailable", name, err)
		}
		if name != "TryAcquire" && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s of a held key, its deadline passed = %v; want DeadlineExceeded in the chain too", name, err)
		}
	}
}

// TestOutageWhileWaitingIsNotBusy: a call waiting for a held key when
// Redis dies ends, at its deadline, with ErrUnavailable, not with the
// ErrNotAcquired of its first attempts: the last answer tells.
func TestOutageWhileWaitingIsNotBusy(t *testing.T) {
	srv := redistest.StartProcess(t, nil)
	holder, err := dlock.Open(t.Context(), "redis://"+srv.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := holder.TryAcquire(t.Context(), "k", nil); err != nil {
		t.Fatal(err)
	}
	busy := &busySignal{ch: make(chan struct{})}
	waiter, err := dlock.Open(t.Context(), "redis://"+srv.Addr(), &dlock.Options{Observer: busy.Observe})
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := waiter.Acquire(ctx, "k", nil)
		done <- err
	}()
	<-busy.ch // the waiter found the key held, and waits
	srv.Kill(t)
	err = <-done
	if errors.Is(err, dlock.ErrNotAcquired) || !errors.Is(err, dlock.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Acquire waiting when Redis died = %v; want DeadlineExceeded and ErrUnavailable, not ErrNotAcquired", err)
	}
}

// busySignal closes ch at the first EventBusy.
type busySignal struct {
	once sync.Once
	ch   chan struct{}
}

func (b *busySignal) Observe(_ context.Context, e dlock.Event) {
	if e.Kind == dlock.EventBusy {
		b.once.Do(func() { close(b.ch) })
	}
}
