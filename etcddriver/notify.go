package etcddriver

import (
	"context"
	"fmt"

	"github.com/dlock-go/dlock/driver"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Subscribe implements [driver.Notifier] with an etcd watch on the lock's
// key and its semaphore slots: every delete of one (a release, which
// revokes the holder's lease, or the lease's expiry) wakes the
// subscriber, within the round trip of the watch event. It returns once
// etcd confirmed the watch, so no later release is missed. Every
// subscriber is woken at every release (see Waiting in the package
// documentation).
//
// A watch whose stream breaks is resumed by the client from the last
// revision it saw, on any member. A watch that etcd ends (its revision
// was compacted) wakes the subscriber once and then stays silent: the
// waiter then has the holder's TTL and its backoff. Subscribe waits for
// etcd's confirmation no longer than Options.CallTimeout.
func (d *locker) Subscribe(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	if err := d.check(); err != nil {
		return nil, nil, err
	}
	ctx, cancelWait := context.WithTimeout(ctx, d.limit)
	defer cancelWait()
	wctx, wcancel := context.WithCancel(d.base)
	// Watch itself blocks while the client's watch stream is stuck (its
	// member paused): the wait ends the watch's context.
	stopWait := context.AfterFunc(ctx, wcancel)
	_, hi := d.slotRange(key)
	wch := d.client.Watch(wctx, d.lockKey(key), clientv3.WithRange(hi), clientv3.WithCreatedNotify(), clientv3.WithFilterPut())
	r, ok := <-wch
	if !stopWait() || !ok || !r.Created || r.Err() != nil {
		wcancel()
		err := r.Err()
		if err == nil {
			err = ctx.Err()
		}
		if err == nil {
			err = fmt.Errorf("the watch ended before it started")
		}
		return nil, nil, fmt.Errorf("etcddriver: subscribe %q: %w: %w", key, driver.ErrUnavailable, err)
	}
	released := make(chan struct{}, 1)
	wake := func() {
		select {
		case released <- struct{}{}:
		default:
		}
	}
	done := make(chan struct{})
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		wcancel()
		return nil, nil, fmt.Errorf("etcddriver: subscribe %q: %w", key, driver.ErrClosed)
	}
	// Under mu, so that Close's Wait never races with this Go.
	d.subsWG.Go(func() {
		defer close(done)
		for {
			select {
			case <-wctx.Done():
				return
			case r, ok := <-wch:
				if !ok || r.Canceled {
					wake()
					return
				}
				for _, ev := range r.Events {
					if ev.Type == mvccpb.DELETE {
						wake()
					}
				}
			}
		}
	})
	d.mu.Unlock()
	cancel := func() {
		wcancel()
		<-done
	}
	return released, cancel, nil
}
