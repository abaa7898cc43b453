package containers_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
)

// Environment variables read by these tests.
const (
	envRequire     = "DLOCK_REQUIRE_CONTAINERS"
	envRedisImage  = "DLOCK_REDIS_IMAGE"
	envValkeyImage = "DLOCK_VALKEY_IMAGE"
)

func image(env, def string) string {
	if v := os.Getenv(env); v != "" {
		return v
	}
	return def
}

// needDocker skips t without a configured Docker engine, or fails it when
// DLOCK_REQUIRE_CONTAINERS=1: CI must not pass by skipping these tests.
func needDocker(t *testing.T) {
	t.Helper()
	if os.Getenv("DOCKER_HOST") != "" {
		return
	}
	if _, err := os.Stat("/var/run/docker.sock"); err == nil {
		return
	}
	if os.Getenv(envRequire) == "1" {
		t.Fatalf("no Docker engine (DOCKER_HOST unset, no /var/run/docker.sock) and %s=1", envRequire)
	}
	t.Skipf("no Docker engine (set DOCKER_HOST, or %s=1 to fail instead)", envRequire)
}

func TestConformanceRedisContainer(t *testing.T) {
	needDocker(t)
	img := image(envRedisImage, "redis:7")
	checkServer(t, img, false)
	runConformanceOnContainer(t, img)
}

func TestConformanceValkeyContainer(t *testing.T) {
	needDocker(t)
	img := image(envValkeyImage, "valkey/valkey:8")
	checkServer(t, img, true)
	runConformanceOnContainer(t, img)
}

// checkServer starts img and checks that the server in it is the one
// named (Valkey or Redis), that it runs in a container that Docker
// reports as running, and that it answers through the mapped port, not
// through a process this machine runs: the container path must not fall
// back silently.
func checkServer(t *testing.T, img string, wantValkey bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	ctr, err := tcredis.Run(ctx, img, testcontainers.WithCmdArgs("--save", "", "--appendonly", "no", "--protected-mode", "no"))
	testcontainers.CleanupContainer(t, ctr)
	if err != nil {
		t.Fatalf("start %s: %v", img, err)
	}
	st, err := ctr.State(ctx)
	if err != nil || !st.Running {
		t.Fatalf("container of %s: state %+v, %v; want running", img, st, err)
	}
	url, err := ctr.ConnectionString(ctx)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := redis.ParseURL(strings.Replace(url, "localhost", "127.0.0.1", 1))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		t.Fatalf("INFO from %s at %s: %v", img, url, err)
	}
	if got := strings.Contains(info, "valkey_version:"); got != wantValkey {
		t.Fatalf("%s: Valkey=%v, want %v:\n%s", img, got, wantValkey, info)
	}
	// The server sees its client come from outside its container (from
	// Docker's bridge), not from this machine's loopback, as a local
	// server process would.
	list, err := c.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(list, "addr=127.0.0.1:") {
		t.Errorf("%s: the client reached the server from 127.0.0.1, not through the container's network:\n%s", img, list)
	}
	// Protected mode would refuse clients that come through the port
	// mapping on an image that does not build it off.
	if pm, err := c.ConfigGet(ctx, "protected-mode").Result(); err != nil || pm["protected-mode"] != "no" {
		t.Errorf("%s: protected-mode = %v, %v; want no", img, pm, err)
	}
	version := "redis_version:"
	if wantValkey {
		version = "valkey_version:"
	}
	t.Logf("%s answers at %s: %s", img, url, firstLine(info, version))
}

func firstLine(s, sub string) string {
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
