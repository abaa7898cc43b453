package redisdriver_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
)

// TestForeignQueueKeyKept: someone else's data at a lock's queue key
// (PREFIX{KEY}:queue) is never touched: a waiter's busy attempt that set
// an expiry on it would make it vanish a few seconds later.
func TestForeignQueueKeyKept(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	ctx := testCtx(t)
	key := uniqueKey("foreignqueue/")
	qk := "dlock:{" + key + "}:queue"
	if err := admin.Set(ctx, qk, "someone else's", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Acquire(ctx, req(key, "holder")); err != nil {
		t.Fatal(err)
	}
	w := req(key, "waiter")
	if res, err := acquireQueued(ctx, t, d, w, driver.Queued{Wait: 100 * time.Millisecond}); err != nil || res.Acquired {
		t.Fatalf("waiter's Acquire = %+v, %v; want busy", res, err)
	}
	if err := d.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	if ttl := admin.PTTL(ctx, qk).Val(); ttl != -1 {
		t.Errorf("foreign key %s got an expiry (PTTL %v): someone else's data would be deleted", qk, ttl)
	}
	if v := admin.Get(ctx, qk).Val(); v != "someone else's" {
		t.Errorf("foreign key %s = %q, changed", qk, v)
	}
}

// TestForeignStringIsNotOtherKind: someone else's string at a lock key is
// ErrWrongType for a lock's Acquire, not ErrWrongKind (which says the key
// is a semaphore's); a semaphore's sorted set there is both.
func TestForeignStringIsNotOtherKind(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := semDriver(t, s)
	ctx := testCtx(t)
	key := uniqueKey("sem/foreign-string/")
	admin.Set(ctx, redisdriver.DefaultPrefix+"{"+key+"}", "theirs", time.Minute)
	_, err := d.Acquire(ctx, req(key, "a"))
	if !errors.Is(err, redisdriver.ErrWrongType) || errors.Is(err, driver.ErrWrongKind) {
		t.Errorf("Acquire over a foreign string = %v; want ErrWrongType and not ErrWrongKind", err)
	}
	sem := uniqueKey("sem/other-kind/")
	if res, err := d.AcquireSlot(ctx, req(sem, "s"), 2); err != nil || !res.Acquired {
		t.Fatalf("AcquireSlot = %+v, %v", res, err)
	}
	_, err = d.Acquire(ctx, req(sem, "a"))
	if !errors.Is(err, redisdriver.ErrWrongType) || !errors.Is(err, driver.ErrWrongKind) {
		t.Errorf("Acquire of a semaphore's key = %v; want ErrWrongType and ErrWrongKind", err)
	}
}
