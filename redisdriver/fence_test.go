package redisdriver_test

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
)

// uniqueKey returns a key no earlier run used: fence keys outlive a run.
func uniqueKey(prefix string) string {
	return prefix + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// TestFenceKeptWhileHeld: a lock held longer than the fence expiry must
// not lose its fence key, or the next grant, by the server's clock, could
// be below a fence granted from a floor ahead of the clock (a fast
// client). Refreshes keep the fence key alive.
func TestFenceKeptWhileHeld(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), &redisdriver.Options{FenceExpiry: 200 * time.Millisecond})
	defer d.Close()
	ctx := testCtx(t)
	key := uniqueKey("fence/held/")
	fast := req(key, "fast")
	res, err := acquireFloor(ctx, t, d, fast, uint64(time.Now().Add(5*time.Second).UnixMicro())) // a client 5s ahead
	if err != nil || !res.Acquired {
		t.Fatalf("Acquire = %+v, %v", res, err)
	}
	// Hold it for three fence expiries, refreshing as a renewer would.
	for range 6 {
		time.Sleep(100 * time.Millisecond)
		if err := d.Refresh(ctx, key, "fast", 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if pttl := admin.PTTL(ctx, "dlock:{"+key+"}:fence").Val(); pttl <= 0 {
		t.Errorf("fence key gone (PTTL %v) while the lock is held", pttl)
	}
	if err := d.Release(ctx, key, "fast"); err != nil {
		t.Fatal(err)
	}
	next, err := d.Acquire(ctx, req(key, "ontime"))
	if err != nil || !next.Acquired {
		t.Fatalf("Acquire = %+v, %v", next, err)
	}
	defer d.Release(ctx, key, "ontime")
	if next.Fence <= res.Fence {
		t.Errorf("fence went backwards after a hold longer than the fence expiry: %d after %d", next.Fence, res.Fence)
	}
}

// TestFenceNear2To53: fences are compared exactly, never past 2^53 where
// Lua's doubles lose integers: a floor from 2^53 on is refused before any
// I/O, and a grant that would reach 2^53 is refused, not rounded.
func TestFenceNear2To53(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	ctx := testCtx(t)
	key := uniqueKey("fence/2^53/")
	for _, floor := range []uint64{1 << 53, 1<<53 + 1, 1<<64 - 1} {
		r := req(key, "t")
		if res, err := acquireFloor(ctx, t, d, r, floor); !errors.Is(err, dlock.ErrInvalid) {
			t.Errorf("Acquire with floor %d = %+v, %v; want ErrInvalid", floor, res, err)
		}
	}
	fk := "dlock:{" + key + "}:fence"
	t.Cleanup(func() { admin.Del(ctx, fk) })
	admin.Set(ctx, fk, strconv.FormatUint(1<<53-3, 10), time.Minute)
	var got []uint64
	for i := range 3 {
		tok := "t" + strconv.Itoa(i)
		res, err := d.Acquire(ctx, req(key, tok))
		if err != nil {
			if !errors.Is(err, dlock.ErrInvalid) {
				t.Errorf("acquire past the last fence below 2^53: %v, want ErrInvalid", err)
			}
			break
		}
		got = append(got, res.Fence)
		d.Release(ctx, key, tok)
	}
	if want := []uint64{1<<53 - 2, 1<<53 - 1}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("fences after %d: %v; want %v and then a refusal", uint64(1<<53-3), got, want)
	}
}

// TestForeignFenceString: someone else's string at PREFIX{KEY}:fence is
// not a fence: acquire and RaiseFence refuse it with ErrWrongType and
// leave it as it was.
func TestForeignFenceString(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	ctx := testCtx(t)
	key := uniqueKey("fence/foreign/")
	fk := "dlock:{" + key + "}:fence"
	t.Cleanup(func() { admin.Del(ctx, fk) })
	for _, theirs := range []string{"their data", "", "12x", "99999999999999999999"} {
		admin.Set(ctx, fk, theirs, 0)
		if res, err := d.Acquire(ctx, req(key, "t")); !errors.Is(err, redisdriver.ErrWrongType) {
			t.Errorf("Acquire with %q at the fence key = %+v, %v; want ErrWrongType", theirs, res, err)
			d.Release(ctx, key, "t")
		}
		if v := admin.Get(ctx, fk).Val(); v != theirs {
			t.Errorf("their string %q at the fence key became %q", theirs, v)
		}
	}
	// RaiseFence on a held lock whose fence key then became someone else's.
	admin.Del(ctx, fk)
	if _, err := d.Acquire(ctx, req(key, "t")); err != nil {
		t.Fatal(err)
	}
	defer d.Release(ctx, key, "t")
	admin.Set(ctx, fk, "their data", 0)
	if err := d.(driver.FenceRaiser).RaiseFence(ctx, key, "t", 42); !errors.Is(err, redisdriver.ErrWrongType) {
		t.Errorf("RaiseFence with a string at the fence key: %v, want ErrWrongType", err)
	}
	if err := d.Refresh(ctx, key, "t", time.Minute); err != nil {
		t.Errorf("Refresh: %v", err)
	}
	if v := admin.Get(ctx, fk).Val(); v != "their data" {
		t.Errorf("their string at the fence key became %q", v)
	}
	if pttl := admin.PTTL(ctx, fk).Val(); pttl != -1 {
		t.Errorf("their string at the fence key got an expiry (%v)", pttl)
	}
}
