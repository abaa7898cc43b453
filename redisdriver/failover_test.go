package redisdriver_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// TestFaultSentinelFailover: the master dies and Sentinel promotes the
// replica. A lock acquired with ReplicaAcks: 1 was on the replica, so it
// survives: others still cannot take the key, the holder can still refresh
// and release it, and the next fence is higher.
func TestFaultSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("a Sentinel failover takes seconds")
	}
	s := redistest.StartSentinel(t)
	ctx := testCtx(t)
	newL := func(acks int) *dlock.Locker {
		c := redis.NewFailoverClient(s.FailoverOptions())
		t.Cleanup(func() { c.Close() })
		l := mustNew(t, c, &redisdriver.Options{
			ReplicaAcks: acks, ReplicaTimeout: time.Second,
			Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 20 * time.Second, RenewInterval: -1}},
		})
		t.Cleanup(func() { l.Close() })
		return l
	}
	holder, other := newL(1), newL(0)
	lease, err := holder.TryAcquire(ctx, "failover/k", nil)
	if err != nil {
		t.Fatal(err)
	}

	old := s.Master().Addr()
	s.Master().Kill(t)
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addrs()[0]})
	defer sc.Close()
	for {
		addr, err := sc.GetMasterAddrByName(ctx, s.MasterName()).Result()
		if err == nil && addr[0]+":"+addr[1] != old {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("no failover")
		case <-time.After(50 * time.Millisecond):
		}
	}

	// The replicated lock is on the new master: still held.
	for {
		l, err := other.TryAcquire(ctx, "failover/k", nil)
		if err == nil {
			l.Release(ctx)
			t.Fatal("after failover another client got the replicated lock")
		}
		var te interface{ Timeout() bool }
		if !errors.Is(err, dlock.ErrUnavailable) && !(errors.As(err, &te) && te.Timeout()) {
			if !errors.Is(err, dlock.ErrNotAcquired) {
				t.Fatal(err)
			}
			break // busy: the new master has the lock
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the new master never answered: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	for {
		err := lease.Refresh(ctx, 0)
		if err == nil {
			break
		}
		if errors.Is(err, dlock.ErrNotHeld) {
			t.Fatalf("holder lost the replicated lock in the failover: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("refresh never succeeded after failover: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatalf("release after failover: %v", err)
	}
	next, err := other.Acquire(ctx, "failover/k", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Release(ctx)
	if next.Fence() <= lease.Fence() {
		t.Errorf("fence after failover %d is not above %d", next.Fence(), lease.Fence())
	}
}
