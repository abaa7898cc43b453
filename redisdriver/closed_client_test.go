package redisdriver_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestClosedClientIsPermanent: a go-redis client that its owner closed
// never works again: an Acquire through it fails at once, with
// dlock.ErrClosed, instead of being retried as unavailable until the
// caller's context ends (forever with context.Background).
func TestClosedClientIsPermanent(t *testing.T) {
	s := redistest.Shared(t)
	client := redis.NewClient(s.Options())
	l := mustNew(t, client, nil)
	defer l.Close()
	client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := l.Acquire(ctx, "closed/k", nil)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Acquire through a closed client returned after %v (%v); want at once", took, err)
	}
	if !errors.Is(err, dlock.ErrClosed) {
		t.Errorf("Acquire through a closed client: %v; want ErrClosed", err)
	}
}
