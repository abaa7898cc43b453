package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/conformance"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
	"github.com/dlock-go/dlock/redlock"
	"github.com/redis/go-redis/v9"
)

// A quorum of three in-process nodes keeps working with one node cut off,
// and its fences keep increasing.
func ExampleNew() {
	ctx := context.Background()
	var nodes []driver.Locker
	var faults []*conformance.FaultyDriver
	for range 3 {
		f := conformance.Faulty(memdriver.NewStore().Driver())
		nodes = append(nodes, f)
		faults = append(faults, f)
	}
	l, err := redlock.New(nodes, &redlock.Options{NodeTimeout: 50 * time.Millisecond})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()

	lease, err := l.TryAcquire(ctx, "report", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	first := lease.Fence()
	fmt.Println("granted")
	lease.Release(ctx)

	faults[0].Partition() // one node of three lost: a majority remains
	lease, err = l.TryAcquire(ctx, "report", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("granted with one node cut off; larger fence:", lease.Fence() > first)
	lease.Release(ctx)

	faults[1].Refuse() // two lost: no majority
	_, err = l.TryAcquire(ctx, "report", nil)
	var qe *redlock.QuorumError
	if errors.As(err, &qe) {
		fmt.Printf("no quorum: %d node granted it, %d needed\n", qe.Got, qe.Need)
	}
	// Output:
	// granted
	// granted with one node cut off; larger fence: true
	// no quorum: 1 node granted it, 2 needed
}

// One client per independent Redis master; the Locker does not close them.
func ExampleNewRedis() {
	var clients []redis.UniversalClient
	for _, addr := range []string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"} {
		// A node's timeout must reach its calls, and a command must
		// not be retried (see NewRedis).
		c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
		defer c.Close()
		clients = append(clients, c)
	}
	l, err := redlock.NewRedis(clients, &redlock.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 30 * time.Second}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	err = l.Do(context.Background(), "nightly-report", nil, func(ctx context.Context, lease *dlock.Lease) error {
		// Pass lease.Fence() with every write, and let the storage reject
		// writes with a fence lower than one it has seen.
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
}

// The same, configured by URL.
func Example_open() {
	// redlock://h1:6379,h2:6379,h3:6379/0?node_timeout=200ms&ttl=30s
	l, err := dlock.Open(context.Background(), os.Getenv("DLOCK_URL"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
}
