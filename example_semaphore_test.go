package dlock_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/dlock-go/dlock"
	_ "github.com/dlock-go/dlock/memdriver" // registers mem://
)

// A Semaphore lets up to N leases hold a key at once: here two concurrent
// backups of one database, and a third that must wait.
func ExampleSemaphore() {
	ctx := context.Background()
	locker, err := dlock.Open(ctx, "mem://") // e.g. os.Getenv("DLOCK_URL")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer locker.Close()

	backups := locker.Semaphore("db-backup", 2)
	a, _ := backups.TryAcquire(ctx, nil)
	b, _ := backups.TryAcquire(ctx, nil)
	fmt.Println("fences", a.Fence(), b.Fence())

	_, err = backups.TryAcquire(ctx, nil)
	fmt.Println("third:", errors.Is(err, dlock.ErrNotAcquired))

	_, err = locker.Semaphore("db-backup", 3).TryAcquire(ctx, nil)
	fmt.Println("another limit:", errors.Is(err, dlock.ErrLimitMismatch))

	a.Release(ctx)
	err = backups.Do(ctx, nil, func(ctx context.Context, lease *dlock.Lease) error {
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
