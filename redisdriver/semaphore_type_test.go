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

// TestSlotScriptsWrongType: every slot call refuses a lock key or a
// holders' hash that holds other data, whether or not the caller holds a
// slot, and leaves the data as it was. The scripts learn the keys' types
// from their reads and ask TYPE only when a read failed or found nothing,
// so each kind of reply is covered: a lock (ErrWrongKind too), a foreign
// list at the lock key, a string at the hash of a free semaphore, and a
// string put at the hash of a held slot.
func TestSlotScriptsWrongType(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := semDriver(t, s)
	ctx := testCtx(t)
	for _, tc := range []struct {
		name  string
		kind  bool                            // the error also wraps ErrWrongKind
		plant func(key, lk, hk string) string // returns the key it wrote
	}{
		{"Lock", true, func(key, lk, hk string) string {
			if res, err := d.Acquire(ctx, req(key, "locker")); err != nil || !res.Acquired {
				t.Fatalf("Acquire = %+v, %v", res, err)
			}
			return lk
		}},
		{"ListAtLockKey", false, func(key, lk, hk string) string {
			admin.RPush(ctx, lk, "theirs")
			return lk
		}},
		{"StringAtHash", false, func(key, lk, hk string) string {
			admin.Set(ctx, hk, "theirs", time.Minute)
			return hk
		}},
		{"StringAtHashOfHeldSlot", false, func(key, lk, hk string) string {
			if res, err := d.AcquireSlot(ctx, req(key, "tok"), 2); err != nil || !res.Acquired {
				t.Fatalf("AcquireSlot = %+v, %v", res, err)
			}
			admin.Del(ctx, hk)
			admin.Set(ctx, hk, "theirs", time.Minute)
			return hk
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := uniqueKey("sem/type/")
			lk := redisdriver.DefaultPrefix + "{" + key + "}"
			hk := lk + ":slots"
			planted := tc.plant(key, lk, hk)
			dump := func() string { return admin.Dump(ctx, planted).Val() }
			before := dump()
			check := func(op string, err error, notHeld bool) {
				t.Helper()
				switch {
				case !errors.Is(err, redisdriver.ErrWrongType):
					t.Errorf("%s = %v; want ErrWrongType", op, err)
				case errors.Is(err, driver.ErrWrongKind) != tc.kind:
					t.Errorf("%s = %v; want ErrWrongKind: %v", op, err, tc.kind)
				case notHeld && !errors.Is(err, dlock.ErrNotHeld):
					t.Errorf("%s = %v; want ErrNotHeld too", op, err)
				}
			}
			res, err := d.AcquireSlot(ctx, req(key, "tok"), 2)
			check("AcquireSlot", err, false)
			if res.Acquired {
				t.Errorf("AcquireSlot over other data = %+v; want no grant", res)
			}
			check("RefreshSlot", d.RefreshSlot(ctx, key, "tok", time.Second), true)
			_, _, err = d.InspectSlots(ctx, key)
			check("InspectSlots", err, false)
			check("ReleaseSlot", d.ReleaseSlot(ctx, key, "tok"), true)
			if after := dump(); after != before {
				t.Errorf("the data at %s changed", planted)
			}
		})
	}
}
