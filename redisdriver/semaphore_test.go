package redisdriver_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
)

func semDriver(t *testing.T, s *redistest.Server) interface {
	driver.Locker
	driver.Semaphore
} {
	d := redisdriver.NewDriver(s.Client(t), nil)
	t.Cleanup(func() { d.Close() })
	return d.(interface {
		driver.Locker
		driver.Semaphore
	})
}

// TestSemaphoreSharesLockFences: a key's fences increase across its locks
// and its slots, since both use the lock's fence key.
func TestSemaphoreSharesLockFences(t *testing.T) {
	d := semDriver(t, redistest.Shared(t))
	ctx := testCtx(t)
	key := uniqueKey("sem/fences/")
	lock, err := d.Acquire(ctx, req(key, "lock1"))
	if err != nil || !lock.Acquired {
		t.Fatalf("Acquire = %+v, %v", lock, err)
	}
	// A floor far ahead makes the lock's fence exceed the server's clock:
	// only the shared fence key makes a later slot's fence larger.
	if err := d.Release(ctx, key, "lock1"); err != nil {
		t.Fatal(err)
	}
	ahead := req(key, "lock2")
	lock2, err := acquireFloor(ctx, t, d, ahead, uint64(time.Now().Add(5*time.Second).UnixMicro()))
	if err != nil || !lock2.Acquired {
		t.Fatalf("Acquire = %+v, %v", lock2, err)
	}
	d.Release(ctx, key, "lock2")
	slot, err := d.AcquireSlot(ctx, req(key, "slot1"), 2)
	if err != nil || !slot.Acquired {
		t.Fatalf("AcquireSlot = %+v, %v", slot, err)
	}
	if slot.Fence <= lock2.Fence {
		t.Errorf("slot fence %d after lock fence %d: fences of a key must increase across locks and slots", slot.Fence, lock2.Fence)
	}
	d.ReleaseSlot(ctx, key, "slot1")
	lock3, err := d.Acquire(ctx, req(key, "lock3"))
	if err != nil || !lock3.Acquired || lock3.Fence <= slot.Fence {
		t.Errorf("lock after slot = %+v, %v; want a fence above %d", lock3, err, slot.Fence)
	}
}

// TestSemaphoreKeysLeaveNothing: the slot keys share the key's hash tag,
// expire with the last holder, and are deleted with the last release.
func TestSemaphoreKeysLeaveNothing(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := semDriver(t, s)
	ctx := testCtx(t)
	key := uniqueKey("sem/keys/")
	lk := redisdriver.DefaultPrefix + "{" + key + "}"
	for _, tok := range []string{"a", "b"} {
		if res, err := d.AcquireSlot(ctx, req(key, tok), 3); err != nil || !res.Acquired {
			t.Fatalf("AcquireSlot = %+v, %v", res, err)
		}
	}
	for _, k := range []string{lk, lk + ":slots"} {
		if pttl := admin.PTTL(ctx, k).Val(); pttl <= 0 || pttl > 11*time.Second {
			t.Errorf("PTTL %s = %v; want it to expire with the last holder (10s)", k, pttl)
		}
	}
	for _, tok := range []string{"a", "b"} {
		if err := d.ReleaseSlot(ctx, key, tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := admin.Exists(ctx, lk, lk+":slots").Val(); n != 0 {
		t.Errorf("%d slot keys left after the last release; want none", n)
	}
}

// TestSemaphoreForeignData: someone else's data where the holders' hash
// should be is reported as ErrWrongType, never overwritten.
func TestSemaphoreForeignData(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := semDriver(t, s)
	ctx := testCtx(t)
	key := uniqueKey("sem/foreign/")
	hk := redisdriver.DefaultPrefix + "{" + key + "}:slots"
	admin.Set(ctx, hk, "theirs", time.Minute)
	if _, err := d.AcquireSlot(ctx, req(key, "a"), 2); !errors.Is(err, redisdriver.ErrWrongType) {
		t.Errorf("AcquireSlot over foreign data = %v; want ErrWrongType", err)
	}
	if v := admin.Get(ctx, hk).Val(); v != "theirs" {
		t.Errorf("foreign data is now %q", v)
	}
}

// TestSemaphoreThroughDlock holds two slots of a 600ms-TTL
// semaphore for longer than the TTL over real Redis: renewal keeps them,
// a third acquirer waits, and is woken by a release.
func TestSemaphoreThroughDlock(t *testing.T) {
	s := redistest.Shared(t)
	l := mustNew(t, s.Client(t), &redisdriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 600 * time.Millisecond}}})
	defer l.Close()
	ctx := testCtx(t)
	semKey, sem := uniqueKey("sem/dlock/"), &dlock.LeaseOptions{Limit: 2}
	var leases []*dlock.Lease
	for range 2 {
		le, err := l.Acquire(ctx, semKey, sem)
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, le)
	}
	var wg sync.WaitGroup
	got := make(chan *dlock.Lease, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() {
		le, err := l.Acquire(wctx, semKey, &dlock.LeaseOptions{TTL: time.Minute, Limit: 2})
		if err == nil {
			got <- le
		}
	})
	defer wg.Wait()
	time.Sleep(1500 * time.Millisecond) // 2.5 TTLs: renewal must keep both
	for i, le := range leases {
		if err := le.Err(); err != nil {
			t.Fatalf("lease %d lost: %v", i, err)
		}
	}
	select {
	case <-got:
		t.Fatal("a third holder got a slot of a full semaphore")
	default:
	}
	leases[0].Release(ctx)
	select {
	case le := <-got:
		if le.Fence() <= leases[1].Fence() {
			t.Errorf("waiter fence %d not above %d", le.Fence(), leases[1].Fence())
		}
		le.Release(ctx)
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter was not given the released slot")
	}
	leases[1].Release(ctx)
}

// TestSemaphoreReplicaAcksUnsupported: semaphores are refused, before any
// I/O, where every grant must wait for replicas, which they do not do.
func TestSemaphoreReplicaAcksUnsupported(t *testing.T) {
	d := redisdriver.NewDriver(redistest.Shared(t).Client(t), &redisdriver.Options{ReplicaAcks: 1}).(driver.Semaphore)
	defer d.(driver.Locker).Close()
	if _, err := d.AcquireSlot(testCtx(t), req("k", "a"), 2); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("AcquireSlot with ReplicaAcks = %v; want errors.ErrUnsupported", err)
	}
}
