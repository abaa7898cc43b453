package redisdriver_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
)

// TestOpenSentinelsDown: with every Sentinel refusing connections, Open
// fails within about one dial (not after go-redis's nested retries, 36s),
// as unavailable, naming each Sentinel, and without the password.
func TestOpenSentinelsDown(t *testing.T) {
	var addrs []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		ln.Close()
	}
	start := time.Now()
	_, err := dlock.Open(testCtx(t), "redis+sentinel://u:"+secret+"@"+strings.Join(addrs, ",")+"/mymaster")
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Open took %v, want under 5s", took)
	}
	if !errors.Is(err, dlock.ErrUnavailable) {
		t.Fatalf("Open = %v, want ErrUnavailable", err)
	}
	for _, a := range addrs {
		if !strings.Contains(err.Error(), a) {
			t.Errorf("the error does not name Sentinel %s: %v", a, err)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("the error spans lines: %q", err)
	}
	noSecret(t, err)
}

// TestOpenSentinelOneDown: one Sentinel refusing among live ones does not
// keep Open from succeeding.
func TestOpenSentinelOneDown(t *testing.T) {
	s := redistest.SharedSentinel(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	roundTrip(t, open(t, "redis+sentinel://"+dead+","+s.Addrs()[0]+"/"+s.MasterName()))
}

// TestOpenClusterNodeAsStandalone: redis:// naming any node of a Cluster
// is refused as a configuration error that names the right scheme, on
// the node that owns Open's check key as on the others.
func TestOpenClusterNodeAsStandalone(t *testing.T) {
	for _, addr := range redistest.SharedCluster(t).Addrs() {
		for _, rawURL := range []string{"redis://" + addr, "redis://" + addr + "?protocol=2"} {
			l, err := dlock.Open(testCtx(t), rawURL)
			if err == nil {
				l.Close()
				t.Errorf("Open(%s) of a Cluster node succeeded", rawURL)
				continue
			}
			if !errors.Is(err, dlock.ErrInvalid) || !strings.Contains(err.Error(), "this is a Redis Cluster node: use redis+cluster://") {
				t.Errorf("Open(%s) = %v; want ErrInvalid saying to use redis+cluster://", rawURL, err)
			}
		}
	}
}
