package dlock_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/dlock-go/dlock"
	_ "github.com/dlock-go/dlock/memdriver" // registers mem://
)

// A Limit of N lets up to N leases hold a key at once (a semaphore): here
// two concurrent backups of one database, and a third that must wait.
func ExampleLeaseOptions_limit() {
	ctx := context.Background()
	locker, err := dlock.Open(ctx, "mem://", nil) // e.g. os.Getenv("DLOCK_URL")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer locker.Close()

	two := &dlock.LeaseOptions{Limit: 2}
	a, _ := locker.TryAcquire(ctx, "db-backup", two)
	b, _ := locker.TryAcquire(ctx, "db-backup", two)
	fmt.Println("fences", a.Fence(), b.Fence())

	_, err = locker.TryAcquire(ctx, "db-backup", two)
	fmt.Println("third:", errors.Is(err, dlock.ErrNotAcquired))

	_, err = locker.TryAcquire(ctx, "db-backup", &dlock.LeaseOptions{Limit: 3})
	fmt.Println("another limit:", errors.Is(err, dlock.ErrLimitMismatch))

	a.Release(ctx)
	err = locker.Do(ctx, "db-backup", two, func(ctx context.Context, lease *dlock.Lease) error {
		fmt.Println("running with fence", lease.Fence())
		return nil
	})
	fmt.Println("done:", err)
	b.Release(ctx)
	// Output:
	// fences 1 2
	// third: true
	// another limit: true
	// running with fence 3
	// done: <nil>
}
