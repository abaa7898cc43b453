package etcddriver

import (
	"context"
	"fmt"

	"github.com/dlock-go/dlock/driver"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Subscribe implements [driver.Notifier] with an etcd watch on the
// entries of key (a lock's holder and waiters, or a semaphore's slots):
// every delete of one (a release, a waiter giving up, or a lease's
// expiry) wakes the subscriber, within the round trip of the watch
// event. It returns once etcd confirmed the watch, so no later release is
// missed. A lock's waiters in dlock subscribe with SubscribeHandoff
// instead, and are woken one at a time, in turn.
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
	wch, wctx, wcancel, err := d.watch(ctx, key, clientv3.WithFilterPut())
	if err != nil {
		return nil, nil, err
	}
	released := make(chan struct{}, 1)
	wake := func() {
		select {
		case released <- struct{}{}:
		default:
		}
	}
	done := make(chan struct{})
	err = d.goWatch(wcancel, func() {
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
	if err != nil {
		return nil, nil, fmt.Errorf("etcddriver: subscribe %q: %w", key, err)
	}
	cancel := func() {
		wcancel()
		<-done
	}
	return released, cancel, nil
}

// watch starts a watch of the entries of key, with opts, and returns once
// etcd confirmed it (waiting no longer than the call timeout). The watch
// runs under wctx, which the driver's Close ends; the caller ends it with
// wcancel.
func (d *locker) watch(ctx context.Context, key string, opts ...clientv3.OpOption) (wch clientv3.WatchChan, wctx context.Context, wcancel context.CancelFunc, err error) {
	ctx, cancelWait := context.WithTimeout(ctx, d.limit)
	defer cancelWait()
	wctx, wcancel = context.WithCancel(d.base)
	// Watch itself blocks while the client's watch stream is stuck (its
	// member paused): the wait ends the watch's context.
	stopWait := context.AfterFunc(ctx, wcancel)
	lo, hi := d.entryRange(key)
	opts = append(opts, clientv3.WithRange(hi), clientv3.WithCreatedNotify())
	wch = d.client.Watch(wctx, lo, opts...)
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
		return nil, nil, nil, fmt.Errorf("etcddriver: subscribe %q: %w: %w", key, driver.ErrUnavailable, err)
	}
	return wch, wctx, wcancel, nil
}

// goWatch runs loop, a subscription's watch loop, unless the driver is
// closed (it then ends the watch with wcancel).
func (d *locker) goWatch(wcancel context.CancelFunc, loop func()) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		wcancel()
		return driver.ErrClosed
	}
	// Under mu, so that Close's Wait never races with this Go.
	d.subsWG.Go(loop)
	return nil
}
