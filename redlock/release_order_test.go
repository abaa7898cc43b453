package redlock_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dlock-go/dlock/conformance"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
	"github.com/dlock-go/dlock/redlock"
)

// TestAcquireRightAfterRelease: when one node of three is partitioned
// right after a Release, the two others must both grant, so the next
// acquire of the key must not find a node still held by the released
// token. Release returns as soon as a majority has released, and the next
// acquire was refused as busy now and then (ExampleNew printed "lock not
// acquired"), until it waited for the Release's late node calls. Each
// round takes a key of its own: a release that a partition cuts off
// leaves its node held for the TTL (as the package documentation says),
// and a later round on that key, with another node partitioned, would
// face two faults.
func TestAcquireRightAfterRelease(t *testing.T) {
	var nodes []driver.Locker
	var faults []*conformance.FaultyDriver
	for range 3 {
		f := conformance.Faulty(memdriver.NewStore().Driver())
		nodes = append(nodes, f)
		faults = append(faults, f)
	}
	l, err := redlock.New(nodes, &redlock.Options{NodeTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for i := range 60 {
		key := fmt.Sprint("k", i)
		lease, err := l.TryAcquire(ctx, key, nil)
		if err != nil {
			t.Fatalf("attempt %d with every node up: %v", i, err)
		}
		if err := lease.Release(ctx); err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
		faults[i%3].Partition() // a majority remains, if all its nodes are free
		lease, err = l.TryAcquire(ctx, key, nil)
		if err != nil {
			t.Fatalf("attempt %d right after a release, node %d partitioned: %v", i, i%3, err)
		}
		// Healed before the release: the acquire hung on the partitioned
		// node goes through then, like a delayed packet, and the
		// release, which reaches each node after its acquire, frees it.
		faults[i%3].Heal()
		lease.Release(ctx)
	}
}
