package redisdriver_test

import (
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
)

// TestSemaphoreReleaseShortensKeys: releasing the holder that expires last
// makes the slot keys expire with the holders left. They kept the
// released holder's expiry: a key whose only holder had expired stayed a
// sorted set until then, and refused a lock (ErrWrongType) for up to a TTL.
func TestSemaphoreReleaseShortensKeys(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := semDriver(t, s)
	ctx := testCtx(t)
	key := uniqueKey("sem/release-expiry/")
	lk := redisdriver.DefaultPrefix + "{" + key + "}"
	long, short := req(key, "long"), req(key, "short")
	long.TTL, short.TTL = time.Minute, time.Second
	for _, r := range []driver.Request{long, short} {
		if res, err := d.AcquireSlot(ctx, r, 2); err != nil || !res.Acquired {
			t.Fatalf("AcquireSlot = %+v, %v", res, err)
		}
	}
	if err := d.ReleaseSlot(ctx, key, "long"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{lk, lk + ":slots"} {
		if pttl := admin.PTTL(ctx, k).Val(); pttl <= 0 || pttl > 2*time.Second {
			t.Errorf("PTTL %s = %v after the 1-minute holder's release; want it to expire with the 1s holder left", k, pttl)
		}
	}
}

// TestSemaphoreFenceKeyOutlivesSlots: with a FenceExpiry shorter than the
// TTL, the slot scripts kept the fence key for FenceExpiry alone (a lock's
// keep it at least a TTL): a fence ahead of the server's clock (a floor)
// was forgotten while its slot was held, and the next slot's fence, from
// the clock, was lower than earlier ones.
func TestSemaphoreFenceKeyOutlivesSlots(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), &redisdriver.Options{FenceExpiry: 20 * time.Millisecond}).(interface {
		driver.Locker
		driver.Semaphore
	})
	t.Cleanup(func() { d.Close() })
	ctx := testCtx(t)
	key := uniqueKey("sem/fence-keep/")
	fk := redisdriver.DefaultPrefix + "{" + key + "}:fence"
	ahead := req(key, "lock")
	lock, err := acquireFloor(ctx, t, d, ahead, uint64(time.Now().Add(5*time.Second).UnixMicro()))
	if err != nil || !lock.Acquired {
		t.Fatalf("Acquire = %+v, %v", lock, err)
	}
	if err := d.Release(ctx, key, "lock"); err != nil {
		t.Fatal(err)
	}
	a, err := d.AcquireSlot(ctx, req(key, "a"), 2)
	if err != nil || !a.Acquired || a.Fence <= lock.Fence {
		t.Fatalf("AcquireSlot a = %+v, %v; want a fence above %d", a, err, lock.Fence)
	}
	if pttl := admin.PTTL(ctx, fk).Val(); pttl < 9*time.Second {
		t.Errorf("fence key PTTL after a slot grant = %v; want at least the 10s TTL", pttl)
	}
	if err := d.RefreshSlot(ctx, key, "a", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if pttl := admin.PTTL(ctx, fk).Val(); pttl < 9*time.Second {
		t.Errorf("fence key PTTL after a slot refresh = %v; want at least the 10s TTL", pttl)
	}
	// Redis expiry has no event to wait for: give FenceExpiry time to pass.
	time.Sleep(100 * time.Millisecond)
	b, err := d.AcquireSlot(ctx, req(key, "b"), 2)
	if err != nil || !b.Acquired {
		t.Fatalf("AcquireSlot b = %+v, %v", b, err)
	}
	if b.Fence <= a.Fence {
		t.Errorf("slot b's fence %d is not above slot a's %d, granted earlier", b.Fence, a.Fence)
	}
}

// TestSemaphoreFenceRestoredByRefresh: when the fence key is gone while
// slots are held (evicted: it has a TTL, so volatile-* maxmemory policies
// may drop it), a slot's refresh puts back the largest fence granted to the
// semaphore's holders, not its own: with its own, the next grant repeated
// a later slot's fence when fences ran ahead of the server's clock.
func TestSemaphoreFenceRestoredByRefresh(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := semDriver(t, s)
	ctx := testCtx(t)
	key := uniqueKey("sem/fence-restore/")
	fk := redisdriver.DefaultPrefix + "{" + key + "}:fence"
	ahead := req(key, "lock")
	if lock, err := acquireFloor(ctx, t, d, ahead, uint64(time.Now().Add(5*time.Second).UnixMicro())); err != nil || !lock.Acquired {
		t.Fatalf("Acquire = %+v, %v", lock, err)
	}
	if err := d.Release(ctx, key, "lock"); err != nil {
		t.Fatal(err)
	}
	a, err := d.AcquireSlot(ctx, req(key, "a"), 3)
	if err != nil || !a.Acquired {
		t.Fatalf("AcquireSlot a = %+v, %v", a, err)
	}
	b, err := d.AcquireSlot(ctx, req(key, "b"), 3)
	if err != nil || !b.Acquired || b.Fence <= a.Fence {
		t.Fatalf("AcquireSlot b = %+v, %v; want a fence above %d", b, err, a.Fence)
	}
	admin.Del(ctx, fk) // evicted
	if err := d.RefreshSlot(ctx, key, "a", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c, err := d.AcquireSlot(ctx, req(key, "c"), 3)
	if err != nil || !c.Acquired {
		t.Fatalf("AcquireSlot c = %+v, %v", c, err)
	}
	if c.Fence <= b.Fence {
		t.Errorf("slot c's fence %d is not above slot b's %d, granted earlier and still held", c.Fence, b.Fence)
	}
}

// TestFenceKeyOutlivesFloor: a fence granted from a floor ahead of the
// server's clock (a client whose clock runs ahead; at most a TTL ahead)
// must stay on record until the server's clock has passed it, even when
// FenceExpiry is shorter than the TTL and the lock was released at once:
// otherwise the next grant, from the clock alone, goes below it.
func TestFenceKeyOutlivesFloor(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), &redisdriver.Options{FenceExpiry: 100 * time.Millisecond})
	defer d.Close()
	ctx := testCtx(t)
	key := uniqueKey("fence/floor/")
	fast := req(key, "fast")
	fast.TTL = 5 * time.Second
	res, err := acquireFloor(ctx, t, d, fast, uint64(time.Now().Add(3*time.Second).UnixMicro())) // a client 3s ahead
	if err != nil || !res.Acquired {
		t.Fatalf("Acquire = %+v, %v", res, err)
	}
	if err := d.Release(ctx, key, "fast"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // three fence expiries
	next, err := d.Acquire(ctx, req(key, "ontime"))
	if err != nil || !next.Acquired {
		t.Fatalf("Acquire = %+v, %v", next, err)
	}
	defer d.Release(ctx, key, "ontime")
	if next.Fence <= res.Fence {
		t.Errorf("fence went backwards: %d after %d (fence key PTTL %v)", next.Fence, res.Fence,
			admin.PTTL(ctx, "dlock:{"+key+"}:fence").Val())
	}
}
