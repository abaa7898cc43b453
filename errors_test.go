package dlock_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// TestBusyMessageNamesKind: a busy error says what is held: the lock, or
// every slot of a semaphore.
func TestBusyMessageNamesKind(t *testing.T) {
	store := memdriver.NewStore()
	l := store.Locker(nil)
	defer l.Close()
	ctx := t.Context()
	if _, err := l.TryAcquire(ctx, "lock", nil); err != nil {
		t.Fatal(err)
	}
	_, err := l.TryAcquire(ctx, "lock", nil)
	if !errors.Is(err, dlock.ErrNotAcquired) || !strings.Contains(err.Error(), `"lock" is held by someone else`) {
		t.Errorf("TryAcquire of a held lock = %v; want ErrNotAcquired saying it is held", err)
	}
	semKey, sem := "sem", &dlock.LeaseOptions{Limit: 2}
	for range 2 {
		if _, err := l.TryAcquire(ctx, semKey, sem); err != nil {
			t.Fatal(err)
		}
	}
	_, err = l.TryAcquire(ctx, semKey, sem)
	if !errors.Is(err, dlock.ErrNotAcquired) || !strings.Contains(err.Error(), `all 2 slots of "sem" are held`) {
		t.Errorf("TryAcquire of a full semaphore = %v; want ErrNotAcquired saying all slots are held", err)
	}
}

// lagging is a context whose deadline has passed while Err still reports
// nil: the moment between a connection's i/o timeout, set from the
// deadline, and the context's own timer.
type lagging struct{ context.Context }

func (lagging) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// TestDeadlineCutIsNotOutage: an attempt cut by the caller's deadline
// (a timeout returned a moment before ctx reports it) says nothing of
// the backend: the error wraps context.DeadlineExceeded, not
// ErrUnavailable.
func TestDeadlineCutIsNotOutage(t *testing.T) {
	s := memdriver.NewStore()
	l := dlock.New(&hooked{Locker: s.Driver(), hook: func(context.Context, driver.Request, driver.Queued, func() (driver.Result, error)) (driver.Result, error) {
		return driver.Result{}, timeout{}
	}}, nil)
	defer l.Close()
	ctx := lagging{t.Context()}
	for name, call := range map[string]func() error{
		"TryAcquire": func() error { _, err := l.TryAcquire(ctx, "k", nil); return err },
		"Acquire":    func() error { _, err := l.Acquire(ctx, "k", nil); return err },
	} {
		err := call()
		if errors.Is(err, dlock.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s cut by its deadline = %v; want context.DeadlineExceeded, not ErrUnavailable", name, err)
		}
	}
}
