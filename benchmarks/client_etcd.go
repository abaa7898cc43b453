package main

import (
	"context"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdAdmin is the client role's own connection to the etcd member: it
// measures the round trip and empties the keyspace between blocks.
type etcdAdmin struct {
	c    *clientv3.Client
	rtts []float64
	n    int // Gets per round-trip block
}

func newEtcdAdmin(cfg *config) (*etcdAdmin, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{cfg.etcd}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	if cfg.etcdPID > 0 {
		serverPIDs = append(serverPIDs, cfg.etcdPID)
	}
	return &etcdAdmin{c: c, n: cfg.pingN}, nil
}

func (a *etcdAdmin) close() { a.c.Close() }

// rtt measures etcd's round trip: the median of n sequential
// linearizable Gets of one key, in µs (what a lock's read costs; a write
// adds the raft log's append).
func (a *etcdAdmin) rtt(ctx context.Context) float64 {
	lat := make([]int64, 0, a.n)
	for range a.n {
		t := time.Now()
		if _, err := a.c.Get(ctx, "rtt"); err != nil {
			return 0
		}
		lat = append(lat, int64(time.Since(t)))
	}
	r := us(quantile(lat, 0.5))
	a.rtts = append(a.rtts, r)
	return r
}

// flush deletes every key: what a block left behind (keys of killed
// contenders) does not stay for the next.
func (a *etcdAdmin) flush(ctx context.Context) {
	a.c.Delete(ctx, "\x00", clientv3.WithFromKey())
}

func (a *etcdAdmin) backend() backend { return backend{flush: a.flush, rtt: a.rtt} }

// etcdScenario runs one scenario of the etcd section: dlock's etcd
// driver, concurrency.Mutex and the minimal etcd lock, on the one etcd
// member, in the same run. Without an etcd member (none installed, and
// none required) it does nothing.
func (c *client) etcdScenario(ctx context.Context, sc string) error {
	if c.etcd == nil {
		fmt.Fprintf(os.Stderr, "[%s] %s: no etcd server, skipped\n", c.cfg.layout, sc)
		return nil
	}
	specs := filterLibs(etcdLibs(), c.cfg.libs, nil)
	if sc != scEtcdHandoff {
		return c.pairScenario(ctx, sc, specs, c.etcd.backend())
	}
	rows, err := c.handoffScenario(ctx, specs, c.etcd.backend(), func(s libSpec) bool { return s.Name == libEtcdMutex })
	c.res.EtcdHandoff = append(c.res.EtcdHandoff, rows...)
	return err
}
