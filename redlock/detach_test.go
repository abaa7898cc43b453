package redlock

import (
	"context"
	"testing"
	"time"
)

type detachKey struct{}

// TestDetachEndsOnlyAtClose: a node call's detached context keeps its
// caller's values, outlives its caller's cancellation, and ends at Close
// synchronously, as a child of Close's context (not through a goroutine,
// which would end it a moment later).
func TestDetachEndsOnlyAtClose(t *testing.T) {
	l := &locker{}
	l.stop, l.stopNow = context.WithCancel(context.Background())
	caller, cancelCaller := context.WithCancel(context.WithValue(context.Background(), detachKey{}, "v"))
	ctx, cancel := l.detach(caller, time.Hour)
	defer cancel()
	if v := ctx.Value(detachKey{}); v != "v" {
		t.Errorf("Value = %v; want the caller's value", v)
	}
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) < 59*time.Minute {
		t.Errorf("Deadline = %v, %v; want an hour from now", dl, ok)
	}
	cancelCaller()
	if err := ctx.Err(); err != nil {
		t.Fatalf("ended with its caller: %v", err)
	}
	l.stopNow()
	select {
	case <-ctx.Done():
	default:
		t.Fatal("not ended when Close's context ended")
	}
	if err := ctx.Err(); err != context.Canceled {
		t.Errorf("Err = %v; want context.Canceled", err)
	}
}
