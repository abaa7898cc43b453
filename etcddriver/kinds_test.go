package etcddriver_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
)

// TestLockAndSemaphoreOnOneKey takes one key as a semaphore, then waits
// for it as a lock, and the other way round: the second kind is refused
// (ErrLimitMismatch), whether it tries once or waits, and leaves no entry
// behind, so that the key is free once the first kind's holder releases.
func TestLockAndSemaphoreOnOneKey(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	l := etcddriver.New(c.Client(t), &etcddriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 30 * time.Second}}})
	defer l.Close()
	sem := &dlock.LeaseOptions{Limit: 2}
	for _, tc := range []struct {
		name         string
		first, other *dlock.LeaseOptions
	}{{"semaphore then lock", sem, nil}, {"lock then semaphore", nil, sem}} {
		key := "kinds/" + tc.name
		held, err := l.Acquire(ctx, key, tc.first)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.TryAcquire(ctx, key, tc.other); !errors.Is(err, dlock.ErrLimitMismatch) {
			t.Errorf("%s: TryAcquire = %v; want ErrLimitMismatch", tc.name, err)
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if _, err := l.Acquire(wctx, key, tc.other); !errors.Is(err, dlock.ErrLimitMismatch) {
			t.Errorf("%s: Acquire = %v; want ErrLimitMismatch", tc.name, err)
		}
		cancel()
		if left := entriesLeft(t, c.Client(t), key); len(left) != 1 {
			t.Errorf("%s: entries %q; want the holder's alone", tc.name, left)
		}
		if err := held.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if left := entriesLeft(t, c.Client(t), key); len(left) != 0 {
			t.Errorf("%s: entries %q after the release; want none", tc.name, left)
		}
	}
}
