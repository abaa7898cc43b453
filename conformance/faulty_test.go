package conformance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

func req(key, tok string) driver.Request {
	return driver.Request{Key: key, Token: tok, TTL: time.Minute}
}

func TestFaultyPartition(t *testing.T) {
	s := memdriver.NewStore()
	f := Faulty(s.Driver())
	defer f.Close()
	f.Partition()

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := f.Acquire(ctx, req("k", "a"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire while partitioned = %v; want the context's error", err)
	}
	var te interface{ Timeout() bool }
	if !errors.As(err, &te) || !te.Timeout() {
		t.Errorf("partitioned call's error %v does not report Timeout(), as a network timeout does", err)
	}
	if _, ok, _ := s.Driver().(driver.Inspector).Inspect(t.Context(), "k"); ok {
		t.Fatal("a partitioned Acquire reached the store")
	}

	// A call hanging in the partition goes through when it heals.
	done := make(chan error, 1)
	go func() {
		_, err := f.Acquire(t.Context(), req("k", "a"))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Acquire while partitioned returned %v before Heal", err)
	case <-time.After(20 * time.Millisecond):
	}
	f.Heal()
	if err := <-done; err != nil {
		t.Fatalf("hanging Acquire after Heal = %v", err)
	}
	if err := f.Release(t.Context(), "k", "a"); err != nil {
		t.Fatal(err)
	}
}

func TestFaultyRefuse(t *testing.T) {
	f := Faulty(memdriver.NewStore().Driver())
	defer f.Close()
	f.Refuse()
	if _, err := f.Acquire(t.Context(), req("k", "a")); !errors.Is(err, driver.ErrUnavailable) {
		t.Fatalf("Acquire while refusing = %v; want ErrUnavailable", err)
	}
	for i, err := range f.RefreshBatch(t.Context(), []driver.RefreshRequest{{Key: "k", Token: "a", TTL: time.Second}}) {
		if !errors.Is(err, driver.ErrUnavailable) {
			t.Errorf("RefreshBatch[%d] while refusing = %v; want ErrUnavailable", i, err)
		}
	}
	f.Heal()
	if res, err := f.Acquire(t.Context(), req("k", "a")); err != nil || !res.Acquired {
		t.Fatalf("Acquire after Heal = %+v, %v", res, err)
	}
}

func TestFaultyLatency(t *testing.T) {
	f := Faulty(memdriver.NewStore().Driver())
	defer f.Close()
	f.SetLatency(30 * time.Millisecond)
	start := time.Now()
	if _, err := f.Acquire(t.Context(), req("k", "a")); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("Acquire with 30ms latency took %v", d)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
	defer cancel()
	if err := f.Release(ctx, "k", "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Release timing out in latency = %v; want DeadlineExceeded", err)
	}
	f.Heal()
	if err := f.Release(t.Context(), "k", "a"); err != nil {
		t.Fatalf("Release after the timed-out one = %v; the timed-out one must not have applied", err)
	}
}

func TestFaultyCloseEndsHangingCalls(t *testing.T) {
	f := Faulty(memdriver.NewStore().Driver())
	f.Partition()
	done := make(chan error, 1)
	go func() { done <- f.Refresh(t.Context(), "k", "a", time.Second) }()
	f.Close() // before or while the call hangs: either way it must end
	if err := <-done; err == nil {
		t.Fatal("Refresh hanging in a partition succeeded after Close")
	}
}

func TestFaultyUnsupported(t *testing.T) {
	f := Faulty(struct{ driver.Locker }{memdriver.NewStore().Driver()})
	defer f.Close()
	ctx := t.Context()
	if _, _, err := f.Subscribe(ctx, "k"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Subscribe = %v; want ErrUnsupported", err)
	}
	if _, _, err := f.Inspect(ctx, "k"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Inspect = %v; want ErrUnsupported", err)
	}
	if err := f.RaiseFence(ctx, "k", "a", 9); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("RaiseFence = %v; want ErrUnsupported", err)
	}
	if _, err := f.AcquireFloor(ctx, req("k", "a"), 9); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("AcquireFloor = %v; want ErrUnsupported", err)
	}
	if _, err := f.AcquireQueued(ctx, req("k", "a"), driver.Queued{Wait: time.Second, Attempt: 1}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("AcquireQueued = %v; want ErrUnsupported", err)
	}
	if res, err := Faulty(memdriver.NewStore().Driver()).AcquireFloor(ctx, req("k", "a"), 9); err != nil || res.Fence < 9 {
		t.Errorf("AcquireFloor over memdriver = %+v, %v; want a grant with fence 9 or more, as memdriver answers", res, err)
	}
	// RefreshBatch is emulated.
	if _, err := f.Acquire(ctx, req("k", "a")); err != nil {
		t.Fatal(err)
	}
	errs := f.RefreshBatch(ctx, []driver.RefreshRequest{{Key: "k", Token: "a", TTL: time.Minute}, {Key: "k", Token: "b", TTL: time.Minute}})
	if len(errs) != 2 || errs[0] != nil || !errors.Is(errs[1], driver.ErrNotHeld) {
		t.Errorf("emulated RefreshBatch = %v; want [nil, ErrNotHeld]", errs)
	}
}
