package dlock_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/dlock-go/dlock"
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
	sem := l.Semaphore("sem", 2)
	for range 2 {
		if _, err := sem.TryAcquire(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	_, err = sem.TryAcquire(ctx, nil)
	if !errors.Is(err, dlock.ErrNotAcquired) || !strings.Contains(err.Error(), `all 2 slots of "sem" are held`) {
		t.Errorf("TryAcquire of a full semaphore = %v; want ErrNotAcquired saying all slots are held", err)
	}
}
