package redisdriver_test

import (
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
)

// TestRefreshRearmsFenceOnlyWhenNeeded: a renewal leaves the fence key's
// expiry alone while more than the lease's TTL is left on it (re-arming it
// at every renewal cost a write each), and re-arms it for FenceExpiry once
// less is left, so that the fence key never expires before the lock or
// slot: for a lock and for a slot. The fence key's expiry is shortened
// with PEXPIRE instead of waiting for it to run down.
func TestRefreshRearmsFenceOnlyWhenNeeded(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	const expiry = time.Hour
	d := redisdriver.NewDriver(s.Client(t), &redisdriver.Options{FenceExpiry: expiry}).(interface {
		driver.Locker
		driver.Semaphore
	})
	t.Cleanup(func() { d.Close() })
	ctx := testCtx(t)
	for _, tc := range []struct {
		name    string
		acquire func(key string) error
		refresh func(key string, ttl time.Duration) error
	}{
		{"Lock", func(key string) error {
			_, err := d.Acquire(ctx, req(key, "tok"))
			return err
		}, func(key string, ttl time.Duration) error {
			return d.Refresh(ctx, key, "tok", ttl)
		}},
		{"Slot", func(key string) error {
			_, err := d.AcquireSlot(ctx, req(key, "tok"), 2)
			return err
		}, func(key string, ttl time.Duration) error {
			return d.RefreshSlot(ctx, key, "tok", ttl)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := uniqueKey("fence/rearm/")
			fk := redisdriver.DefaultPrefix + "{" + key + "}:fence"
			if err := tc.acquire(key); err != nil {
				t.Fatal(err)
			}
			pttlAfter := func(left, ttl time.Duration) time.Duration {
				t.Helper()
				if err := admin.PExpire(ctx, fk, left).Err(); err != nil {
					t.Fatal(err)
				}
				if err := tc.refresh(key, ttl); err != nil {
					t.Fatal(err)
				}
				return admin.PTTL(ctx, fk).Val()
			}
			// 30s left, a 10s TTL: enough, left alone.
			if got := pttlAfter(30*time.Second, 10*time.Second); got > 30*time.Second || got < 20*time.Second {
				t.Errorf("fence key PTTL after a refresh with 30s of it left and a 10s TTL = %v; want it left at about 30s", got)
			}
			// 5s left, a 10s TTL: the lock would outlive it, re-armed.
			if got := pttlAfter(5*time.Second, 10*time.Second); got < expiry-time.Minute {
				t.Errorf("fence key PTTL after a refresh with 5s of it left and a 10s TTL = %v; want FenceExpiry (%v)", got, expiry)
			}
			// 30s left, a 2h TTL (above FenceExpiry): re-armed for the TTL.
			if got := pttlAfter(30*time.Second, 2*time.Hour); got < 2*time.Hour-time.Minute {
				t.Errorf("fence key PTTL after a refresh with 30s of it left and a 2h TTL = %v; want the TTL", got)
			}
		})
	}
}
