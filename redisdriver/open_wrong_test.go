package redisdriver_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	_ "github.com/dlock-go/dlock/redlock" // redlock:// for TestOpenErrorsHideSecret

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
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
	_, err := dlock.Open(testCtx(t), "redis+sentinel://u:"+secret+"@"+strings.Join(addrs, ",")+"/mymaster", nil)
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
			l, err := dlock.Open(testCtx(t), rawURL, nil)
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

// TestOpenErrorsHideSecret: errors of Sentinel, Cluster, TLS and redlock
// URLs that fail at the network or at the server never show the
// password.
func TestOpenErrorsHideSecret(t *testing.T) {
	plain := redistest.Shared(t)
	se := redistest.SharedSentinel(t)
	closed := closedPort(t)
	for _, u := range []string{
		"redis+sentinel://user:" + secret + "@" + closed + "/mymaster?dial_timeout=300ms",
		"redis+sentinel://user:" + secret + "@" + se.Addrs()[0] + "/" + se.MasterName() + "?sentinel_auth=true",
		"redis+sentinel://user:" + secret + "@" + se.Addrs()[0] + "/nosuchmaster",
		"redis+sentinel://user:" + secret + "@" + se.Addrs()[0] + "/" + se.MasterName(),
		"rediss://user:" + secret + "@" + plain.Addr() + "?dial_timeout=1s&read_timeout=1s",
		"rediss+cluster://user:" + secret + "@" + plain.Addr() + "?dial_timeout=1s&read_timeout=1s",
		"redis+cluster://user:" + secret + "@" + closed + "?dial_timeout=300ms",
		"redis+cluster://user:" + secret + "@" + plain.Addr(),
		"redlock://user:" + secret + "@" + closed + "," + plain.Addr() + "," + se.Master().Addr() + "?dial_timeout=300ms",
		"redlocks://user:" + secret + "@" + closed + "," + plain.Addr() + "," + se.Master().Addr() + "?dial_timeout=300ms",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		start := time.Now()
		l, err := dlock.Open(ctx, u, nil)
		cancel()
		t.Logf("%v: %s: %v", time.Since(start).Round(time.Millisecond), driver.RedactURL(u), err)
		if err == nil {
			l.Close()
			t.Errorf("Open(%s) succeeded with a wrong password", driver.RedactURL(u))
			continue
		}
		noSecret(t, err)
	}
}

// TestSentinelReplicaOnlyRefused: replica_only=true connects a Sentinel
// client to replicas only, where every lock write is refused (READONLY),
// which is retried as unavailable: every Acquire would wait for its whole
// context, forever without a deadline. Open refuses it.
func TestSentinelReplicaOnlyRefused(t *testing.T) {
	se := redistest.SharedSentinel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	l, err := dlock.Open(ctx, "redis+sentinel://"+se.Addrs()[0]+"/"+se.MasterName()+"?replica_only=true", nil)
	if err == nil {
		_, aerr := l.TryAcquire(ctx, "replicaonly/k", nil)
		l.Close()
		t.Fatalf("Open with replica_only=true succeeded (TryAcquire then: %v)", aerr)
	}
	if !errors.Is(err, dlock.ErrInvalid) || !strings.Contains(err.Error(), "replica_only") {
		t.Errorf("Open with replica_only=true: %v; want ErrInvalid naming replica_only", err)
	}
	l, err = dlock.Open(ctx, "redis+sentinel://"+se.Addrs()[0]+"/"+se.MasterName()+"?replica_only=false", nil)
	if err != nil {
		t.Fatalf("Open with replica_only=false: %v", err)
	}
	l.Close()
}

// TestOpenReplicaRefused: a redis:// URL that names a read-only replica
// (a common slip: the replica's address instead of the master's) fails at
// Open, saying so, instead of opening a Locker whose every acquire is
// refused (READONLY) and retried until its context ends.
func TestOpenReplicaRefused(t *testing.T) {
	master := redistest.StartProcess(t, nil)
	replica := redistest.StartProcess(t, nil)
	ctx := testCtx(t)
	host, port, _ := net.SplitHostPort(master.Addr())
	if err := replica.Client(t).SlaveOf(ctx, host, port).Err(); err != nil {
		t.Fatal(err)
	}
	octx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	l, err := dlock.Open(octx, "redis://"+replica.Addr(), nil)
	if err == nil {
		_, aerr := l.TryAcquire(octx, "replica/k", nil)
		l.Close()
		t.Fatalf("Open of a read-only replica succeeded (TryAcquire then: %v)", aerr)
	}
	if !strings.Contains(err.Error(), "replica") {
		t.Errorf("Open of a replica: %v; want an error saying the server is a replica", err)
	}
	open(t, "redis://"+master.Addr()) // the master opens
}
