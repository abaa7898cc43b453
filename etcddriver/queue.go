package etcddriver

import (
	"context"
	"fmt"
	"time"

	"github.com/dlock-go/dlock/driver"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var _ driver.Handoff = (*locker)(nil)

// AcquireQueued implements [driver.Handoff]: as Acquire, but its entry
// stays when it is not the first: the waiter's place in the queue, first
// come, first served by create revision. The entry's lease is renewed by
// every queued attempt (a keep-alive sent after the attempt's start, or a
// lease granted after it), so that its expiry is at least the TTL after
// the attempt was sent; the waiter's subscription, which sees the entry
// become the first, names that attempt in its Turn: by the argument of
// [driver.Handoff], a waiter that counts its lease from that attempt's
// send time stops before etcd could free the key. An entry the waiter
// stops renewing expires with its lease, and the waiters behind it move
// up. An attempt with q.Wait or q.Attempt zero is a plain Acquire: an
// entry must never be first without an attempt to count the grant from.
func (d *locker) AcquireQueued(ctx context.Context, req driver.Request, q driver.Queued) (driver.Result, error) {
	if q.Wait <= 0 || q.Attempt == 0 {
		return d.Acquire(ctx, req)
	}
	if err := d.check(); err != nil {
		return driver.Result{}, err
	}
	dig, asked := digest(req.Token), seconds(req.TTL)
	ek, unpin := d.pinName(req.Key, dig)
	defer unpin()
	lo, hi := d.entryRange(req.Key)
	ctx, cancel := d.bound(ctx)
	defer cancel()
	sent := time.Now()
	if res, ok := d.queuedRenewal(ctx, ek, dig, asked, sent); ok {
		return res, nil
	}
	g, err := d.entryLease(ctx, ek, dig, asked)
	if err != nil {
		return driver.Result{}, d.notApplied("acquire", req.Key, err)
	}
	lv := lockValue{digest: dig, asked: asked, owner: req.Owner}
	resp, err := d.withRenewal(ctx, g, func() (*clientv3.TxnResponse, error) {
		return d.client.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(ek), "=", 0)).
			Then(clientv3.OpPut(ek, lv.encode(), clientv3.WithLease(g.ID)), clientv3.OpGet(lo, byCreate(hi, 1)...)).
			Else(clientv3.OpGet(ek), clientv3.OpGet(lo, byCreate(hi, 1)...)).
			Commit()
	})
	if err != nil {
		return driver.Result{}, d.attemptErr("acquire", req.Key, ek, dig, g, asked, sent, err)
	}
	mine, err := d.queuedEntry(ctx, req.Key, ek, dig, asked, g, resp, sent)
	if err != nil {
		return driver.Result{}, err
	}
	first := resp.Responses[1].GetResponseRange().GetKvs()[0]
	switch {
	case string(first.Key) == ek:
		d.noteQueued(ek, dig, 0, mine, true)
		return driver.Result{Acquired: true, Fence: uint64(mine)}, nil
	case isSlot(first):
		d.forget(ek, dig)
		why := fmt.Errorf("etcddriver: acquire %q: semaphore slots hold it: %w", req.Key, driver.ErrWrongKind)
		return driver.Result{}, d.dropEntry(ctx, "acquire", req.Key, clientv3.LeaseID(mustLease(resp, g)), why)
	}
	d.setQueued(ek, dig, true)
	d.noteQueued(ek, dig, q.Attempt, mine, false)
	return driver.Result{}, nil
}

// mustLease returns the lease of the entry of a queued attempt's
// transaction resp made with g.
func mustLease(resp *clientv3.TxnResponse, g attemptGrant) int64 {
	if resp.Succeeded {
		return int64(g.ID)
	}
	return resp.Responses[0].GetResponseRange().GetKvs()[0].Lease
}

// queuedRenewal answers a queued attempt sent at sent, of a waiter whose
// subscription sees its entry first, with one keep-alive of the entry's
// lease instead of a transaction (a raft proposal, as is every
// transaction that may write, whichever branch it takes). A lease found
// alive was renewed after the attempt's start, and the entry attached to
// it still exists; an entry the watch saw first holds the key (it stays
// first until it is deleted). A waiter the watch shows behind others
// makes the whole attempt, which reads the queue from etcd: the watch
// lags etcd (the delete that made the entry first may not have reached
// it yet), and a "busy" taken from it would deny the token a key it
// holds (tests/linearize caught such an answer). ok is false when the
// driver must make the whole attempt.
func (d *locker) queuedRenewal(ctx context.Context, ek, dig string, asked int64, sent time.Time) (res driver.Result, ok bool) {
	d.mu.Lock()
	s := d.handoffs[grantKey{ek, dig}]
	gr, known := d.grants[grantKey{ek, dig}]
	d.mu.Unlock()
	if s == nil || !known || gr.uncertain || gr.asked != asked {
		return res, false
	}
	s.mu.Lock()
	rev := s.attemptRev
	first := rev != 0 && s.seenRev == rev && s.first
	s.mu.Unlock()
	if !first {
		return res, false
	}
	granted, err := d.keepAlive(ctx, gr.lease)
	if err != nil || granted <= 0 || !d.renewed(ek, dig, gr.lease, granted, sent) {
		return res, false
	}
	d.noteQueued(ek, dig, 0, rev, true)
	return driver.Result{Acquired: true, Fence: uint64(rev)}, true
}

// entryLease returns the lease for a queued attempt on ek by the token of
// dig: the lease of the token's entry, if the driver remembers it,
// renewed by a keep-alive (heldLease), else as leaseFor.
func (d *locker) entryLease(ctx context.Context, ek, dig string, asked int64) (attemptGrant, error) {
	if gr, ok := d.lookup(ek, dig); ok && !gr.uncertain && gr.asked == asked {
		granted, err := d.keepAlive(ctx, gr.lease)
		if err != nil {
			return attemptGrant{}, err
		}
		if granted > 0 {
			return attemptGrant{&clientv3.LeaseGrantResponse{ID: gr.lease, TTL: granted}, heldLease}, nil
		}
		d.forget(ek, dig)
	}
	return d.leaseFor(ctx, ek, dig, asked)
}

// queuedEntry finishes a queued attempt's transaction resp, made with g
// and sent at sent: it remembers the token's entry and its lease, renews
// an entry found on another lease (see renewHeld), and returns the
// entry's create revision.
func (d *locker) queuedEntry(ctx context.Context, key, ek, dig string, asked int64, g attemptGrant, resp *clientv3.TxnResponse, sent time.Time) (int64, error) {
	if resp.Succeeded {
		d.remember(ek, dig, g.ID, asked, g.TTL, sent)
		return resp.Header.Revision, nil
	}
	kv := resp.Responses[0].GetResponseRange().GetKvs()[0]
	if !isToken(kv, dig) {
		d.forget(ek, dig)
		if g.from != heldLease {
			d.revokeSpare(ctx, g.ID)
		}
		return 0, d.nameTaken("acquire", key, ek)
	}
	if kv.Lease == int64(g.ID) {
		d.remember(ek, dig, g.ID, asked, g.TTL, sent)
		return kv.CreateRevision, nil
	}
	var spare *clientv3.LeaseGrantResponse
	if g.from != heldLease {
		spare = g.LeaseGrantResponse
	}
	held, _ := decodeValue(kv.Value)
	if err := d.renewHeld(ctx, key, ek, kv, held, asked, spare, sent); err != nil {
		return 0, err
	}
	return kv.CreateRevision, nil
}

// dropEntry deletes the entry of a refused attempt by revoking its lease,
// and returns why. If the revoke fails, the outcome of the attempt is
// unknown to the caller, whom it leaves an entry that stands in the queue
// (or counts against a semaphore's limit) until it expires: dlock then
// undoes the attempt with a release of its token. That holds for every
// failure, a refusal too (no leader): the entry was put, so the error is
// never ErrUnavailable, which would say nothing was applied.
func (d *locker) dropEntry(ctx context.Context, op, key string, lease clientv3.LeaseID, why error) error {
	if _, err := d.client.Revoke(ctx, lease); err != nil {
		return fmt.Errorf("etcddriver: %s %q: %w: dropping the refused attempt's entry: %w", op, key, driver.ErrOutcomeUnknown, err)
	}
	return why
}

// deleted finishes the delete of the entry ek of the token of dig, whose
// previous value was prev (nil if there was none): the driver forgets the
// grant, and keeps its lease for a later attempt if the entry was on it
// (no key is attached to it now) and the grant is not of unknown
// outcome; an entry on another lease (a grant moved by another driver),
// or on the lease of an attempt of unknown outcome, has that lease
// revoked.
func (d *locker) deleted(ctx context.Context, ek, dig string, prev *mvccpb.KeyValue) {
	g, ok := d.lookup(ek, dig)
	d.forget(ek, dig)
	switch {
	case prev == nil:
	case ok && prev.Lease == int64(g.lease) && g.uncertain:
		// The lease of an attempt of unknown outcome: the revoke of a
		// release given up may still land on it, and would delete the
		// entry of the grant a pooled lease went to.
		d.revokeSpare(ctx, g.lease)
	case ok && prev.Lease == int64(g.lease):
		d.toPool(g)
	case prev.Lease != 0:
		d.revokeSpare(ctx, clientv3.LeaseID(prev.Lease))
	}
}

// setQueued marks the remembered grant of ek of the token of dig as a
// waiter's entry (queued), or as the holder's.
func (d *locker) setQueued(ek, dig string, queued bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if g, ok := d.grants[grantKey{ek, dig}]; ok {
		g.queued = queued
		d.grants[grantKey{ek, dig}] = g
	}
}
