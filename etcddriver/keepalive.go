package etcddriver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlock-go/dlock/driver"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// keepAlives is the driver's one LeaseKeepAlive stream, opened at the
// first keep-alive and kept open until it breaks or the driver closes:
// every renewal (Refresh, RefreshBatch, the renewal of a reused lease by
// Acquire) is a message on it rather than a stream of its own, whose
// opening costs etcd and the client more than the renewal itself (a
// stream per call measured a third more etcd CPU per acquire and release
// pair, in the benchmarks module's etcd section).
//
// etcd answers a stream's requests one at a time, in order, so the n-th
// reply about a lease answers the n-th request about it on that stream:
// replies are matched to their callers by lease, first in first out.
// A reply is therefore a renewal etcd made after its caller sent it,
// which is what the caller counts its deadline from.
//
// A caller whose deadline passes before its reply, on a stream that has
// answered nothing since the caller sent its requests and for at least
// staleStream, drops the stream, so that the next call opens another
// one, through the client's balancer, possibly to another member: a
// stream to a member that froze (its process stopped) would otherwise
// stay silent until gRPC's keep-alive drops the connection. The other
// callers waiting on it then fail with an outcome that is unknown, as
// after any lost reply. A stream that answers others is alive, however
// short the deadlines of the callers that leave it: they leave alone.
type keepAlives struct {
	// send serializes the senders: a caller registers and sends its
	// requests under it, so that replies come in the order of the
	// registrations. The receiver never takes it: a sender blocked by
	// gRPC's flow control waits for replies the receiver must be free
	// to take.
	send sync.Mutex
	mu   sync.Mutex // guards cur and the streams' waiting
	cur  *kaStream  // nil until opened, and after it broke
}

// kaStream is one opened stream.
type kaStream struct {
	replies atomic.Uint64 // replies received, for telling a silent stream
	stream  etcdserverpb.Lease_LeaseKeepAliveClient
	cancel  context.CancelFunc
	waiting map[clientv3.LeaseID][]chan kaReply // guarded by keepAlives.mu; nil once broken
}

// kaReply is the answer to one keep-alive request: the TTL etcd renewed
// the lease with (0 if it does not exist), or the stream's error.
type kaReply struct {
	ttl int64
	err error
}

// staleStream is how long a stream must have answered nothing before a
// caller whose deadline passed drops it: far above a loaded member's
// reply time, far below the shortest etcd lease (one second).
const staleStream = 250 * time.Millisecond

// errStreamDropped fails the keep-alives still waiting on a stream that
// a caller dropped because its reply did not come in time.
var errStreamDropped = errors.New("the keep-alive stream was dropped after a call's deadline passed")

// keepAliveAll renews leases in one round trip: one keep-alive request
// for each, on the driver's stream (see keepAlives). It returns the TTL
// each lease was renewed with, missing or 0 for a lease that does not
// exist.
//
// If another caller dropped the stream (its deadline passed) while these
// requests waited on it, they are sent again on a new stream, up to
// maxResends times: a keep-alive renews a lease from the moment etcd
// handles it, so a second one is harmless, and a reply to either is a
// renewal after the caller sent its first. Without it, one call cut by
// its own deadline failed every call on the stream with an unknown
// outcome (an Acquire without a deadline then returned ErrUnavailable:
// tests/linearize, shared Lockers with 1–5 ms contexts).
func (d *locker) keepAliveAll(ctx context.Context, leases []clientv3.LeaseID) (map[clientv3.LeaseID]int64, error) {
	for n := 0; ; n++ {
		ttls, err := d.keepAliveOnce(ctx, leases)
		if n == maxResends || ctx.Err() != nil || !errors.Is(err, errStreamDropped) {
			return ttls, err
		}
	}
}

// maxResends bounds how many times keepAliveAll sends its requests again
// after other callers dropped the stream.
const maxResends = 3

// keepAliveOnce sends one keep-alive request for each of leases and
// waits for their replies (see keepAliveAll).
func (d *locker) keepAliveOnce(ctx context.Context, leases []clientv3.LeaseID) (map[clientv3.LeaseID]int64, error) {
	s, chs, err := d.sendKeepAlives(ctx, leases)
	if err != nil {
		return nil, toErr(ctx, err)
	}
	seen, sent := s.replies.Load(), time.Now()
	ttls := make(map[clientv3.LeaseID]int64, len(leases))
	for i, ch := range chs {
		select {
		case r := <-ch:
			if r.err != nil {
				return nil, toErr(ctx, r.err)
			}
			ttls[leases[i]] = r.ttl
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) && s.replies.Load() == seen && time.Since(sent) >= staleStream {
				d.failStream(s, errStreamDropped)
			}
			return nil, ctx.Err()
		}
	}
	return ttls, nil
}

// sendKeepAlives sends a keep-alive request for each lease on the
// driver's stream, opening one if there is none, and returns the stream
// and the channels the replies will come on, in the order of leases.
func (d *locker) sendKeepAlives(ctx context.Context, leases []clientv3.LeaseID) (*kaStream, []chan kaReply, error) {
	k := &d.ka
	k.send.Lock()
	defer k.send.Unlock()
	k.mu.Lock()
	s := k.cur
	k.mu.Unlock()
	if s == nil {
		var err error
		if s, err = d.openStream(ctx); err != nil {
			return nil, nil, err
		}
		k.mu.Lock()
		k.cur = s
		k.mu.Unlock()
	}
	chs := make([]chan kaReply, len(leases))
	for i, id := range leases {
		ch := make(chan kaReply, 1) // the receiver never blocks on a caller that left
		k.mu.Lock()
		if s.waiting == nil {
			k.mu.Unlock()
			return nil, nil, errStreamBroken
		}
		s.waiting[id] = append(s.waiting[id], ch)
		k.mu.Unlock()
		chs[i] = ch
		if err := s.stream.Send(&etcdserverpb.LeaseKeepAliveRequest{ID: int64(id)}); err != nil {
			d.failStream(s, err)
			return nil, nil, err
		}
	}
	return s, chs, nil
}

// errStreamBroken fails a keep-alive that was about to be sent on a
// stream that broke meanwhile (its receiver saw the error).
var errStreamBroken = errors.New("the keep-alive stream broke")

// openStream opens a stream and starts its receiver, which runs until
// the stream breaks or the driver closes. Called with ka.send held; the
// opening waits no longer than ctx.
func (d *locker) openStream(ctx context.Context) (*kaStream, error) {
	sctx, cancel := context.WithCancel(d.base)
	stop := context.AfterFunc(ctx, cancel)
	// With the require-leader flag, as every call (see bound): a member
	// that lost its leader ends the stream at once.
	stream, err := d.leases.LeaseKeepAlive(clientv3.WithRequireLeader(sctx))
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		return nil, err
	}
	s := &kaStream{stream: stream, cancel: cancel, waiting: make(map[clientv3.LeaseID][]chan kaReply)}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		cancel()
		return nil, fmt.Errorf("etcddriver: %w", driver.ErrClosed)
	}
	// Under mu, so that Close's Wait never races with this Go.
	d.subsWG.Go(func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				d.failStream(s, err)
				return
			}
			d.deliver(s, r)
		}
	})
	return s, nil
}

// deliver hands a reply to the first caller waiting for its lease.
func (d *locker) deliver(s *kaStream, r *etcdserverpb.LeaseKeepAliveResponse) {
	d.ka.mu.Lock()
	defer d.ka.mu.Unlock()
	s.replies.Add(1)
	id := clientv3.LeaseID(r.ID)
	q := s.waiting[id]
	if len(q) == 0 {
		return
	}
	q[0] <- kaReply{ttl: r.TTL}
	if len(q) == 1 {
		delete(s.waiting, id)
	} else {
		s.waiting[id] = q[1:]
	}
}

// failStream ends s: its waiting callers get err, and the next call opens
// another stream.
func (d *locker) failStream(s *kaStream, err error) {
	d.ka.mu.Lock()
	defer d.ka.mu.Unlock()
	if d.ka.cur == s {
		d.ka.cur = nil
	}
	for _, q := range s.waiting {
		for _, ch := range q {
			ch <- kaReply{err: err}
		}
	}
	s.waiting = nil
	s.cancel()
}
