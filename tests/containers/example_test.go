package containers_test

import (
	"strings"
	"testing"

	"github.com/dlock-go/dlock/conformance"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
)

// runConformanceOnContainer is what an application's integration test (or
// a third-party driver's, with its own driver in NewDriver) writes to run
// dlock's conformance suite against a real server in a container: copy it
// into a _test.go file and call it from a Test function with the image to
// test, e.g. "redis:7" or "valkey/valkey:8". The module's tests call it
// for both.
func runConformanceOnContainer(t *testing.T, image string) {
	ctx := t.Context()
	ctr, err := tcredis.Run(ctx, image,
		// No persistence; protected mode off, so that the server answers
		// clients that reach it through Docker's port mapping (the
		// official images build it off, a server's own default is on).
		testcontainers.WithCmdArgs("--save", "", "--appendonly", "no", "--protected-mode", "no"))
	testcontainers.CleanupContainer(t, ctr)
	if err != nil {
		t.Fatalf("start %s: %v", image, err)
	}
	url, err := ctr.ConnectionString(ctx)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := redis.ParseURL(strings.Replace(url, "localhost", "127.0.0.1", 1))
	if err != nil {
		t.Fatal(err)
	}
	opts.ContextTimeoutEnabled = true // lease renewal relies on deadlines
	newClient := func(t *testing.T) *redis.Client {
		c := redis.NewClient(opts)
		t.Cleanup(func() { c.Close() })
		return c
	}

	conformance.Run(t, func(t *testing.T) *conformance.Harness {
		return &conformance.Harness{
			NewDriver: func(t *testing.T) driver.Locker {
				return redisdriver.NewDriver(newClient(t), nil)
			},
			// A partition simulated in front of the driver.
			Partitioned: func(t *testing.T) (driver.Locker, func()) {
				f := conformance.Faulty(redisdriver.NewDriver(newClient(t), nil))
				return f, f.Partition
			},
		}
	})
}
