package redisdriver_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// errorSpy passes every call on to its driver and reports each failed
// acquire on errs (never blocking: later errors are dropped).
type errorSpy struct {
	driver.Locker
	errs chan error
}

func newErrorSpy(d driver.Locker) *errorSpy {
	return &errorSpy{Locker: d, errs: make(chan error, 1)}
}

func (s *errorSpy) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	res, err := s.Locker.Acquire(ctx, req)
	if err != nil {
		select {
		case s.errs <- err:
		default:
		}
	}
	return res, err
}

// TestRefusedWritesAreRetried: a write that the server refuses before
// running it (a demoted master: READONLY; min-replicas-to-write without
// replicas: NOREPLICAS; maxmemory reached: OOM) is ErrUnavailable, never
// ErrWrongType, and Locker.Acquire keeps trying until the server takes
// writes again, within its context.
func TestRefusedWritesAreRetried(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		refuse func(ctx context.Context, t *testing.T, s, other *redistest.Server, admin *redis.Client)
		heal   func(ctx context.Context, admin *redis.Client) error
	}{
		{
			name: "DemotedMaster",
			refuse: func(ctx context.Context, t *testing.T, s, other *redistest.Server, admin *redis.Client) {
				host, port := "127.0.0.1", other.Addr()[len("127.0.0.1:"):]
				if err := admin.SlaveOf(ctx, host, port).Err(); err != nil {
					t.Fatal(err)
				}
			},
			heal: func(ctx context.Context, admin *redis.Client) error {
				return admin.SlaveOf(ctx, "NO", "ONE").Err()
			},
		},
		{
			name: "MinReplicasToWrite",
			args: []string{"--min-replicas-to-write", "1"},
			heal: func(ctx context.Context, admin *redis.Client) error {
				return admin.ConfigSet(ctx, "min-replicas-to-write", "0").Err()
			},
		},
		{
			name: "MaxMemory",
			args: []string{"--maxmemory", "1"},
			heal: func(ctx context.Context, admin *redis.Client) error {
				return admin.ConfigSet(ctx, "maxmemory", "0").Err()
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := redistest.StartProcess(t, &redistest.Options{Args: c.args})
			admin := s.Client(t)
			ctx := testCtx(t)
			if c.refuse != nil {
				c.refuse(ctx, t, s, redistest.StartProcess(t, nil), admin)
			}
			spy := newErrorSpy(redisdriver.NewDriver(s.Client(t), nil))
			l := dlock.New(spy, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 10 * time.Second, RenewInterval: -1, Retry: dlock.ExponentialBackoff(20*time.Millisecond, 20*time.Millisecond)}})
			t.Cleanup(func() { l.Close() })

			actx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			type result struct {
				lease *dlock.Lease
				err   error
			}
			done := make(chan result, 1)
			go func() {
				lease, err := l.Acquire(actx, "refused/k", nil)
				done <- result{lease, err}
			}()
			var first error
			select {
			case first = <-spy.errs:
			case r := <-done:
				t.Fatalf("Acquire returned before the server took writes: %v", r.err)
			}
			if !errors.Is(first, dlock.ErrUnavailable) || errors.Is(first, redisdriver.ErrWrongType) {
				t.Errorf("refused write reported as %v; want ErrUnavailable, not ErrWrongType", first)
			}
			if err := c.heal(ctx, admin); err != nil {
				t.Fatal(err)
			}
			r := <-done
			if r.err != nil {
				t.Fatalf("Acquire after the server took writes again: %v", r.err)
			}
			if err := r.lease.Release(ctx); err != nil {
				t.Error(err)
			}
		})
	}
}
