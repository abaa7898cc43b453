package redisdriver_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
)

// TestEmptyTokenRefused: an empty token is refused with ErrInvalid before
// any I/O, on every call that takes one: with it anyone could refresh or
// release a lock taken with "".
func TestEmptyTokenRefused(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	ctx := testCtx(t)
	key := uniqueKey("token/empty/")
	lk := "dlock:{" + key + "}"
	if res, err := d.Acquire(ctx, req(key, "")); !errors.Is(err, dlock.ErrInvalid) {
		t.Errorf("Acquire with an empty token = %+v, %v; want ErrInvalid", res, err)
	}
	if n := admin.Exists(ctx, lk, lk+":fence").Val(); n != 0 {
		t.Errorf("Acquire with an empty token wrote %d keys", n)
		admin.Del(ctx, lk, lk+":fence")
	}
	// A lock someone took with "" (by hand, or an older driver) cannot be
	// released or refreshed with "" either.
	admin.Set(ctx, lk, "\n1\n\nsomeone", time.Minute)
	t.Cleanup(func() { admin.Del(ctx, lk) })
	if err := d.Release(ctx, key, ""); !errors.Is(err, dlock.ErrInvalid) {
		t.Errorf("Release with an empty token: %v; want ErrInvalid", err)
	}
	if err := d.Refresh(ctx, key, "", time.Hour); !errors.Is(err, dlock.ErrInvalid) {
		t.Errorf("Refresh with an empty token: %v; want ErrInvalid", err)
	}
	if err := d.(driver.FenceRaiser).RaiseFence(ctx, key, "", 7); !errors.Is(err, dlock.ErrInvalid) {
		t.Errorf("RaiseFence with an empty token: %v; want ErrInvalid", err)
	}
	errs := d.(driver.BatchRefresher).RefreshBatch(ctx, []driver.RefreshRequest{{Key: key, TTL: time.Hour}})
	if !errors.Is(errs[0], dlock.ErrInvalid) {
		t.Errorf("RefreshBatch with an empty token: %v; want ErrInvalid", errs[0])
	}
	if v := admin.Get(ctx, lk).Val(); v != "\n1\n\nsomeone" {
		t.Errorf("the lock taken with an empty token became %q", v)
	}
	if pttl := admin.PTTL(ctx, lk).Val(); pttl > time.Minute {
		t.Errorf("the lock taken with an empty token was refreshed (PTTL %v)", pttl)
	}
}
