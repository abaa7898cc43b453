package redistest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// dockerConfigured reports whether a Docker engine may answer: DOCKER_HOST
// is set or the default socket exists. Only then is testcontainers-go
// asked, so that its engine discovery never runs (or waits) on a machine
// without Docker.
func dockerConfigured() bool {
	if os.Getenv("DOCKER_HOST") != "" {
		return true
	}
	_, err := os.Stat("/var/run/docker.sock")
	return err == nil
}

// startContainer runs a Redis container (image DLOCK_REDIS_IMAGE, default
// redis:7) and returns its mapped address; it is removed when c cleans up.
func startContainer(c cleaner) (*Server, error) {
	image := os.Getenv(EnvImage)
	if image == "" {
		image = "redis:7"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ctr, err := testcontainers.Run(ctx, image,
		testcontainers.WithExposedPorts("6379/tcp"),
		testcontainers.WithCmd("redis-server", "--save", "", "--appendonly", "no"),
		testcontainers.WithWaitStrategy(wait.ForListeningPort("6379/tcp").WithStartupTimeout(time.Minute)),
	)
	if ctr != nil {
		c.Cleanup(func() { testcontainers.TerminateContainer(ctr) })
	}
	if err != nil {
		return nil, fmt.Errorf("redistest: container %s: %w", image, err)
	}
	ep, err := ctr.PortEndpoint(ctx, "6379/tcp", "")
	if err != nil {
		return nil, fmt.Errorf("redistest: container %s: %w", image, err)
	}
	// Docker may map to localhost; keep addresses on loopback literals.
	ep = strings.Replace(ep, "localhost:", "127.0.0.1:", 1)
	return &Server{addr: ep}, nil
}
