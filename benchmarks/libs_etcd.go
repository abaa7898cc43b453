package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/etcddriver"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// The etcd section's libraries: dlock's etcd driver, etcd's own
// concurrency.Mutex, and the minimal etcd lock, each with a client of its
// own (one gRPC connection) to the one etcd member.
const (
	libEtcdMinimal = "etcd minimal lock"
	libEtcdMutex   = "concurrency.Mutex"
	cfgEtcdDriver  = "etcddriver"
	cfgSession     = "session"
)

// etcdLibs lists the libraries of the etcd section. The minimal lock is a
// baseline, not a library: it has no waiting queue, renewal of its own or
// fences.
func etcdLibs() []libSpec {
	return []libSpec{
		{Name: libEtcdMinimal, Config: "baseline", Nodes: 1,
			Options: "Txn(If CreateRevision(key) = 0, Then Put(key) with the process's session lease (TTL 15s)); release: Delete(key); waiting: a watch from the failed Txn's revision for the key's delete, then again",
			open:    openEtcdMinimal},
		{Name: libEtcdMutex, Config: cfgSession, Nodes: 1,
			Options: "go.etcd.io/etcd/client/v3/concurrency v3.6.17: one Session (TTL 15s) per process, a NewMutex per acquire; TryLock for the pairs, Lock (a queue in revision order) for the handoff, Unlock to release",
			open:    openEtcdMutex},
		{Name: libDlock, Config: cfgEtcdDriver, Nodes: 1,
			Options: "etcddriver.New(client, {Lock: {TTL: 15s}}): an entry and a lease of its own per token, renewal every TTL/3, fences (create revisions), waiters queued in revision order and handed the key in turn (driver.Handoff), release: Delete(entry)",
			open:    openEtcdDlock},
	}
}

// etcdClient connects to the etcd member of e.
func etcdClient(e env) (*clientv3.Client, error) {
	if e.etcd == "" {
		return nil, errors.New("no etcd server")
	}
	return clientv3.New(clientv3.Config{Endpoints: []string{e.etcd}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// ---- dlock's etcd driver ----

func openEtcdDlock(e env) (lib, error) {
	c, err := etcdClient(e)
	if err != nil {
		return nil, err
	}
	l := etcddriver.New(c, &etcddriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: e.ttlOr(defaultTTL)}}})
	return &etcdDlockLib{dlockLib: dlockLib{l: l}, c: c}, nil
}

// etcdDlockLib is dlock over etcd: the Locker, then its client, closed in
// that order.
type etcdDlockLib struct {
	dlockLib
	c *clientv3.Client
}

func (d *etcdDlockLib) Close() error {
	err := d.dlockLib.Close()
	d.c.Close()
	return err
}

// ---- concurrency.Mutex ----

type etcdMutexLib struct {
	c *clientv3.Client
	s *concurrency.Session
}

type etcdMutexLock struct{ m *concurrency.Mutex }

func (l etcdMutexLock) Release(ctx context.Context) error { return l.m.Unlock(ctx) }

func openEtcdMutex(e env) (lib, error) {
	c, err := etcdClient(e)
	if err != nil {
		return nil, err
	}
	s, err := concurrency.NewSession(c, concurrency.WithTTL(int(e.ttlOr(defaultTTL)/time.Second)))
	if err != nil {
		c.Close()
		return nil, err
	}
	return &etcdMutexLib{c: c, s: s}, nil
}

func (m *etcdMutexLib) TryLock(ctx context.Context, key string) (releaser, error) {
	mu := concurrency.NewMutex(m.s, "mutex/"+key)
	err := mu.TryLock(ctx)
	if errors.Is(err, concurrency.ErrLocked) {
		return nil, errBusy
	}
	if err != nil {
		return nil, err
	}
	return etcdMutexLock{mu}, nil
}

func (m *etcdMutexLib) Lock(ctx context.Context, key string) (releaser, error) {
	mu := concurrency.NewMutex(m.s, "mutex/"+key)
	if err := mu.Lock(ctx); err != nil {
		return nil, err
	}
	return etcdMutexLock{mu}, nil
}

func (m *etcdMutexLib) Close() error {
	m.s.Close()
	return m.c.Close()
}

// ---- the minimal etcd lock ----

type etcdMinimalLib struct {
	c *clientv3.Client
	s *concurrency.Session // only for its lease, kept alive by the session
}

type etcdMinimalLock struct {
	c   *clientv3.Client
	key string
}

func (l etcdMinimalLock) Release(ctx context.Context) error {
	_, err := l.c.Delete(ctx, l.key)
	return err
}

func openEtcdMinimal(e env) (lib, error) {
	c, err := etcdClient(e)
	if err != nil {
		return nil, err
	}
	s, err := concurrency.NewSession(c, concurrency.WithTTL(int(e.ttlOr(defaultTTL)/time.Second)))
	if err != nil {
		c.Close()
		return nil, err
	}
	return &etcdMinimalLib{c: c, s: s}, nil
}

// try makes one attempt; it returns the revision etcd answered at.
func (m *etcdMinimalLib) try(ctx context.Context, key string) (releaser, int64, error) {
	key = "minimal/" + key
	resp, err := m.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, "", clientv3.WithLease(m.s.Lease()))).
		Commit()
	if err != nil {
		return nil, 0, err
	}
	if !resp.Succeeded {
		return nil, resp.Header.Revision, errBusy
	}
	return etcdMinimalLock{m.c, key}, resp.Header.Revision, nil
}

func (m *etcdMinimalLib) TryLock(ctx context.Context, key string) (releaser, error) {
	r, _, err := m.try(ctx, key)
	return r, err
}

// Lock tries, and while busy watches the key from the revision after the
// failed attempt for its delete, then tries again: every waiter is woken
// by every release.
func (m *etcdMinimalLib) Lock(ctx context.Context, key string) (releaser, error) {
	for {
		r, rev, err := m.try(ctx, key)
		if !errors.Is(err, errBusy) {
			return r, err
		}
		if err := m.waitDelete(ctx, "minimal/"+key, rev+1); err != nil {
			return nil, err
		}
	}
}

func (m *etcdMinimalLib) waitDelete(ctx context.Context, key string, rev int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for r := range m.c.Watch(wctx, key, clientv3.WithRev(rev), clientv3.WithFilterPut()) {
		if err := r.Err(); err != nil {
			return err
		}
		if len(r.Events) > 0 {
			return nil
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("the watch of %q ended", key)
}

func (m *etcdMinimalLib) Close() error {
	m.s.Close()
	return m.c.Close()
}
