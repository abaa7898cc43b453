package memdriver_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/memdriver"
)

func ExampleNew() {
	ctx := context.Background()
	l := memdriver.New(nil)
	defer l.Close()

	lease, err := l.Acquire(ctx, "nightly-report", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("holding", lease.Key(), "with fence", lease.Fence())

	// A second attempt fails while the lease is held.
	if _, err := l.TryAcquire(ctx, "nightly-report", nil); errors.Is(err, dlock.ErrNotAcquired) {
		fmt.Println("busy")
	}

	if err := lease.Release(ctx); err != nil {
		fmt.Println(err)
	}
	lease, err = l.TryAcquire(ctx, "nightly-report", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("holding again with fence", lease.Fence())
	lease.Release(ctx)
	// Output:
	// holding nightly-report with fence 1
	// busy
	// holding again with fence 2
}

// Two machines, modelled by two Lockers over one Store, run a job in turn.
func ExampleStore_Locker() {
	ctx := context.Background()
	store := memdriver.NewStore()
	machines := []*dlock.Locker{store.Locker(nil), store.Locker(nil)}
	var mu sync.Mutex
	var fences []uint64
	var wg sync.WaitGroup
	for _, l := range machines {
		defer l.Close()
		wg.Go(func() {
			err := l.Do(ctx, "migrate", nil, func(ctx context.Context, lease *dlock.Lease) error {
				// Only one machine at a time gets here; ctx ends
				// if the lease is lost.
				mu.Lock()
				fences = append(fences, lease.Fence())
				mu.Unlock()
				return nil
			})
			if err != nil {
				fmt.Println(err)
			}
		})
	}
	wg.Wait()
	fmt.Println(len(fences), "runs, one at a time")
	// Output:
	// 2 runs, one at a time
}

// storage is a resource protected by a lock. It remembers the highest fence
// it has seen and rejects writes that carry a lower one.
type storage struct {
	mu    sync.Mutex
	fence uint64
	data  string
}

func (s *storage) Write(fence uint64, data string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fence < s.fence {
		return fmt.Errorf("write with fence %d rejected: fence %d was seen", fence, s.fence)
	}
	s.fence, s.data = fence, data
	return nil
}

// A holder that stalls past its lease (a GC pause, a stopped VM) writes
// late; the storage rejects the write by its fence, since a newer holder has
// written since.
func Example_fencing() {
	ctx := context.Background()
	store := memdriver.NewStore()
	stalled := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 50 * time.Millisecond, RenewInterval: -1}}) // no renewal: it stalls
	defer stalled.Close()
	next := store.Locker(nil)
	defer next.Close()
	var db storage

	old, err := stalled.Acquire(ctx, "account-42", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	<-old.Context().Done() // the lease expires while its holder is stalled

	lease, err := next.Acquire(ctx, "account-42", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("new holder:", db.Write(lease.Fence(), "balance=100"))
	lease.Release(ctx)

	// The stalled holder wakes up and writes with its old fence.
	fmt.Println("stale holder:", db.Write(old.Fence(), "balance=0"))
	fmt.Println("data:", db.data)
	// Output:
	// new holder: <nil>
	// stale holder: write with fence 1 rejected: fence 2 was seen
	// data: balance=100
}
