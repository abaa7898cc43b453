package redisdriver_test

import (
	"context"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
)

// TestSemaphoreRedisRestart: Redis restarts empty while both slots of a
// semaphore are held and a third acquirer waits. The holders learn of
// their loss (their refresh finds no slot), the waiter is granted a slot
// (its subscription broke with the server), and its fence is above the
// lost holders' (the server's clock has passed them).
func TestSemaphoreRedisRestart(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	l := mustNew(t, s.Client(t), &redisdriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second}}})
	defer l.Close()
	ctx := testCtx(t)
	semKey, sem := uniqueKey("sem/restart/"), &dlock.LeaseOptions{Limit: 2}
	var top uint64
	var held []*dlock.Lease
	for range 2 {
		lease, err := l.Acquire(ctx, semKey, sem)
		if err != nil {
			t.Fatal(err)
		}
		top = max(top, lease.Fence())
		held = append(held, lease)
	}
	got := make(chan *dlock.Lease, 1)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	go func() {
		lease, err := l.Acquire(wctx, semKey, sem)
		if err != nil {
			t.Error(err)
		}
		got <- lease
	}()
	s.Restart(t)
	for _, le := range held {
		select {
		case <-le.Context().Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("a holder whose slot was lost with the restart still holds it 10s later")
		}
	}
	lease := <-got
	if lease == nil {
		return
	}
	defer lease.Release(ctx)
	if lease.Fence() <= top {
		t.Errorf("fence after the restart %d; want above %d", lease.Fence(), top)
	}
}
