package redistest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name under which the Sentinel monitors the master.
const SentinelMaster = "dlockmaster"

// Sentinel is a master, one replica of it, and one Sentinel watching them
// (quorum 1, down-after 1s).
type Sentinel struct {
	master, replica, sentinel *Server
}

// StartSentinel starts a master, its replica and a Sentinel, and waits until
// the replica is in sync and the Sentinel knows the master. They stop when
// t ends.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s, err := startSentinel(t, t.TempDir())
	if err != nil {
		fail(t, err)
	}
	return s
}

// MasterName returns the name the Sentinel knows the master by.
func (s *Sentinel) MasterName() string { return SentinelMaster }

// Addrs returns the Sentinels' addresses.
func (s *Sentinel) Addrs() []string { return []string{s.sentinel.Addr()} }

// Master returns the master as it was started (a failover may promote the
// replica).
func (s *Sentinel) Master() *Server { return s.master }

// Replica returns the replica as it was started.
func (s *Sentinel) Replica() *Server { return s.replica }

// SentinelServer returns the Sentinel process.
func (s *Sentinel) SentinelServer() *Server { return s.sentinel }

// FailoverOptions returns go-redis options for a failover client.
func (s *Sentinel) FailoverOptions() *redis.FailoverOptions {
	return &redis.FailoverOptions{
		MasterName:            SentinelMaster,
		SentinelAddrs:         s.Addrs(),
		DialTimeout:           2 * time.Second,
		ReadTimeout:           2 * time.Second,
		WriteTimeout:          2 * time.Second,
		ContextTimeoutEnabled: true,
	}
}

// Client returns a new failover client (redis.NewFailoverClient), closed
// when t ends.
func (s *Sentinel) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewFailoverClient(s.FailoverOptions())
	t.Cleanup(func() { c.Close() })
	return c
}

func startSentinel(c cleaner, dir string) (*Sentinel, error) {
	// No delay before a full sync: the replica is in sync at once.
	master, err := startProcess(c, dir, &Options{Args: []string{"--repl-diskless-sync-delay", "0"}})
	if err != nil {
		return nil, err
	}
	host, port := "127.0.0.1", strings.TrimPrefix(master.Addr(), "127.0.0.1:")
	replica, err := startProcess(c, dir, &Options{Args: []string{"--replicaof", host, port}})
	if err != nil {
		return nil, err
	}
	bin, err := serverBinary()
	if err != nil {
		return nil, err
	}
	var sent *Server
	var lastErr error
	for range 5 {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", p))
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
			"sentinel monitor %s %s %s 1\n"+
			"sentinel down-after-milliseconds %[3]s 1000\n"+
			"sentinel failover-timeout %[3]s 3000\n",
			p, dir, SentinelMaster, host, port)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			return nil, fmt.Errorf("redistest: %w", err)
		}
		spec := procSpec{bin: bin, dir: dir, port: p, name: "sentinel",
			args: []string{conf, "--sentinel", "--logfile", "", "--daemonize", "no"}}
		proc, err := startProcessOnce(spec)
		if err != nil {
			lastErr = err
			continue
		}
		sent = &Server{addr: proc.addr, proc: proc, spec: spec}
		c.Cleanup(sent.shutdown)
		break
	}
	if sent == nil {
		return nil, lastErr
	}
	s := &Sentinel{master: master, replica: replica, sentinel: sent}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// waitReady polls until the replica is in sync and the Sentinel reports
// the master; neither announces it.
func (s *Sentinel) waitReady(ctx context.Context) error {
	mc := redis.NewClient(s.master.Options())
	defer mc.Close()
	err := poll(ctx, func() error {
		info, err := mc.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "connected_slaves:1") || !strings.Contains(info, "state=online") {
			return fmt.Errorf("replica not in sync: %s", strings.ReplaceAll(strings.TrimSpace(info), "\r\n", " "))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redistest: sentinel setup: %w", err)
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.sentinel.Addr()})
	defer sc.Close()
	err = poll(ctx, func() error {
		addr, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
		if err != nil {
			return err
		}
		if len(addr) != 2 || addr[0]+":"+addr[1] != s.master.Addr() {
			return fmt.Errorf("sentinel reports master %v", addr)
		}
		m, err := sc.Master(ctx, SentinelMaster).Result()
		if err != nil {
			return err
		}
		if n, _ := strconv.Atoi(m["num-slaves"]); n < 1 {
			return fmt.Errorf("sentinel knows no replica yet")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redistest: sentinel setup: %w", err)
	}
	return nil
}
