package memdriver_test

import (
	"context"
	"fmt"

	"github.com/dlock-go/dlock"
	_ "github.com/dlock-go/dlock/memdriver" // registers mem://
)

// Open a store by URL: every mem://NAME in a process is the same store.
func Example_open() {
	ctx := context.Background()
	a, err := dlock.Open(ctx, "mem://example?ttl=5s", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	b, err := dlock.Open(ctx, "mem://example", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()

	lease, err := a.Acquire(ctx, "k", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lease.Release(ctx)
	hs, _ := b.Holders(ctx, "k")
	fmt.Println("b sees fence", hs[0].Fence)
	// Output:
	// b sees fence 1
}
