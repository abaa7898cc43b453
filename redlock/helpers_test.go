package redlock_test

import (
	"time"

	"context"
	"testing"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/conformance"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
	"github.com/dlock-go/dlock/redlock"
)

// memCluster is N independent in-process nodes.
type memCluster struct {
	stores []*memdriver.Store
}

func newMemCluster(n int) *memCluster {
	c := &memCluster{}
	for range n {
		c.stores = append(c.stores, memdriver.NewStore())
	}
	return c
}

// newDriver returns a Redlock driver over new clients of every node, each
// behind a fault injector. The caller closes the driver.
func (c *memCluster) newDriver(t testing.TB, opts *redlock.Options) (driver.Locker, []*conformance.FaultyDriver) {
	t.Helper()
	nodes := make([]driver.Locker, len(c.stores))
	faults := make([]*conformance.FaultyDriver, len(c.stores))
	for i, s := range c.stores {
		faults[i] = conformance.Faulty(s.Driver())
		nodes[i] = faults[i]
	}
	d, err := redlock.NewDriver(nodes, opts)
	if err != nil {
		t.Fatalf("redlock.NewDriver: %v", err)
	}
	return d, faults
}

// driver is newDriver, closed when the test ends.
func (c *memCluster) driver(t testing.TB, opts *redlock.Options) (driver.Locker, []*conformance.FaultyDriver) {
	t.Helper()
	d, f := c.newDriver(t, opts)
	t.Cleanup(func() { d.Close() })
	return d, f
}

// holder reports who holds key on node i, asking the node directly.
func (c *memCluster) holder(t testing.TB, i int, key string) (driver.Holder, bool) {
	t.Helper()
	d := c.stores[i].Driver()
	defer d.Close()
	h, ok, err := d.(driver.Inspector).Inspect(context.Background(), key)
	if err != nil {
		t.Fatalf("node %d: Inspect: %v", i, err)
	}
	return h, ok
}

// raw returns a plain client of node i, closed when the test ends.
func (c *memCluster) raw(t testing.TB, i int) driver.Locker {
	d := c.stores[i].Driver()
	t.Cleanup(func() { d.Close() })
	return d
}

// plain hides every optional capability of a driver.
type plain struct{ driver.Locker }

// partitionMajority cuts a majority of fs off.
func partitionMajority(fs []*conformance.FaultyDriver) {
	for _, f := range fs[:len(fs)/2+1] {
		f.Partition()
	}
}

// awaitHeld waits until every node holds key: Acquire returns once a
// majority granted it, and the other nodes' grants land a moment later.
func (c *memCluster) awaitHeld(t testing.TB, key string) {
	t.Helper()
	for i := range c.stores {
		for _, held := c.holder(t, i, key); !held; _, held = c.holder(t, i, key) {
			time.Sleep(time.Millisecond)
		}
	}
}

// soleHolder returns the one holder of a lock that Locker.Holders
// reported, and whether there is one.
func soleHolder(hs []dlock.Holder, err error) (dlock.Holder, bool, error) {
	if err != nil || len(hs) == 0 {
		return dlock.Holder{}, false, err
	}
	return hs[0], true, nil
}
