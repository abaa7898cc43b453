package dlock_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dlock-go/dlock"
	_ "github.com/dlock-go/dlock/memdriver" // registers mem://
)

// Open picks the backend from a URL, so the same program runs on the
// in-memory backend in tests and on Redis in production.
func ExampleOpen() {
	ctx := context.Background()
	locker, err := dlock.Open(ctx, "mem://example-open?ttl=30s", nil) // e.g. os.Getenv("DLOCK_URL")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer locker.Close()

	lease, err := locker.TryAcquire(ctx, "report", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("holding", lease.Key(), "with fence", lease.Fence())

	_, err = locker.TryAcquire(ctx, "report", nil)
	fmt.Println("second attempt:", errors.Is(err, dlock.ErrNotAcquired))
	fmt.Println("release:", lease.Release(ctx))
	// Output:
	// holding report with fence 1
	// second attempt: true
	// release: <nil>
}

// Do runs a function while holding a key. Its context ends if the lease is
// lost, and the key is released when it returns.
func ExampleLocker_Do() {
	locker, _ := dlock.Open(context.Background(), "mem://", nil)
	defer locker.Close()

	err := locker.Do(context.Background(), "nightly-job", nil, func(ctx context.Context, lease *dlock.Lease) error {
		fmt.Println("running with fence", lease.Fence())
		select {
		case <-ctx.Done(): // the lease was lost: stop at once
			return context.Cause(ctx)
		case <-time.After(10 * time.Millisecond): // the work
			return nil
		}
	})
	fmt.Println("done:", err)
	// Output:
	// running with fence 1
	// done: <nil>
}

// An Election runs a function on exactly one candidate at a time.
func ExampleElection() {
	locker, _ := dlock.Open(context.Background(), "mem://", nil)
	defer locker.Close()

	e := dlock.NewElection(locker, "scheduler", &dlock.ElectionOptions{
		OnElected: func(lease *dlock.Lease) { fmt.Println("elected with fence", lease.Fence()) },
	})
	err := e.Run(context.Background(), func(ctx context.Context, lease *dlock.Lease) error {
		fmt.Println("leading")
		return nil // the work is over; Run returns
	})
	fmt.Println("Run:", err)
	// Output:
	// elected with fence 1
	// leading
	// Run: <nil>
}
