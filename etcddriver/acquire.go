package etcddriver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dlock-go/dlock/driver"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// entryRange returns the range [lo, hi) of the entries of key, a lock's
// or a semaphore's: PREFIX+KEY, a NUL byte, then the entry's name (see
// names.go). Every token that holds or waits for key has one entry there,
// whose value names the token's digest.
func (d *locker) entryRange(key string) (lo, hi string) {
	return d.prefix + key + "\x00", d.prefix + key + "\x01"
}

// digestIs returns the comparisons that hold if ek exists and its value
// names the token of dig (see lockValue): a value compare on a missing
// key fails in etcd.
func digestIs(ek, dig string) []clientv3.Cmp {
	head := valueMagic + " " + dig
	return []clientv3.Cmp{
		clientv3.Compare(clientv3.Value(ek), ">", head+" "),
		clientv3.Compare(clientv3.Value(ek), "<", head+"!"),
	}
}

// isToken reports whether kv is the entry of the token of dig.
func isToken(kv *mvccpb.KeyValue, dig string) bool {
	lv, ok := decodeValue(kv.Value)
	return ok && lv.digest == dig
}

// entryOf returns the entry of the token of dig among kvs, or nil.
func entryOf(kvs []*mvccpb.KeyValue, dig string) *mvccpb.KeyValue {
	for _, kv := range kvs {
		if isToken(kv, dig) {
			return kv
		}
	}
	return nil
}

// byCreate are the options of a read of an entry range, up to hi, that
// returns its first limit entries (all, if limit is 0) by create
// revision: the first is the holder of a lock.
func byCreate(hi string, limit int64) []clientv3.OpOption {
	return []clientv3.OpOption{clientv3.WithRange(hi), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(limit)}
}

// isSlot reports whether kv is a semaphore's entry (a slot), not a lock's.
func isSlot(kv *mvccpb.KeyValue) bool {
	lv, _ := decodeValue(kv.Value)
	return lv.limit > 0
}

// Acquire implements [driver.Locker]: in one transaction, if no entry of
// key exists (no holder, no waiter), it puts the token's entry, which
// then holds; otherwise it reads the first entry by create revision (the
// holder). It never queues: a waiter keeps its place with
// [locker.AcquireQueued]. A grant it returns to a token with a handoff
// subscription is noted there, so that the subscription's cancel keeps
// the entry (see SubscribeHandoff).
func (d *locker) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
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
	g, err := d.leaseFor(ctx, ek, dig, asked)
	if err != nil {
		return driver.Result{}, d.notApplied("acquire", req.Key, err)
	}
	lv := lockValue{digest: dig, asked: asked, owner: req.Owner}
	resp, err := d.withRenewal(ctx, g, func() (*clientv3.TxnResponse, error) {
		return d.client.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(lo), "=", 0).WithRange(hi)).
			Then(clientv3.OpPut(ek, lv.encode(), clientv3.WithLease(g.ID))).
			Else(clientv3.OpGet(lo, byCreate(hi, 1)...)).
			Commit()
	})
	if err != nil {
		return driver.Result{}, d.attemptErr("acquire", req.Key, ek, dig, g, asked, sent, err)
	}
	if resp.Succeeded {
		d.remember(ek, dig, g.ID, asked, g.TTL, sent)
		d.noteQueued(ek, dig, 0, resp.Header.Revision, true)
		return driver.Result{Acquired: true, Fence: uint64(resp.Header.Revision)}, nil
	}
	kv := resp.Responses[0].GetResponseRange().GetKvs()[0]
	switch {
	case isToken(kv, dig):
		// Held by this token already: the same grant again, renewed
		// (its entry perhaps made by another driver, under a name of
		// its own).
		ek = string(kv.Key)
		held, _ := decodeValue(kv.Value)
		if err := d.renewHeld(ctx, req.Key, ek, kv, held, asked, g.LeaseGrantResponse, sent); err != nil {
			return driver.Result{}, err
		}
		// A waiter's last attempt is a plain one (see AcquireQueued):
		// the cancel of its subscription must keep the entry.
		d.noteQueued(ek, dig, 0, kv.CreateRevision, true)
		return driver.Result{Acquired: true, Fence: uint64(kv.CreateRevision)}, nil
	case isSlot(kv):
		d.revokeSpare(ctx, g.ID)
		return driver.Result{}, fmt.Errorf("etcddriver: acquire %q: semaphore slots hold it: %w", req.Key, driver.ErrWrongKind)
	}
	// Busy: keep the unused lease for the token's next attempt.
	d.keepSpare(ek, dig, g.LeaseGrantResponse, asked, sent)
	return driver.Result{HolderTTL: d.holderTTL(ctx, clientv3.LeaseID(kv.Lease))}, nil
}

// attemptGrant is the lease of an attempt, and how it is to be renewed.
type attemptGrant struct {
	*clientv3.LeaseGrantResponse
	from leaseSource
}

// leaseFor returns the lease for an attempt on ek by the token of dig
// (see attemptLease). A lease the token's last busy attempt left is
// renewed first: sent beside the transaction, the renewals of all the
// waiters a release wakes measured slower (32 waiters, a loaded
// machine). A lease a release left is renewed beside the transaction, by
// withRenewal.
func (d *locker) leaseFor(ctx context.Context, ek, dig string, asked int64) (attemptGrant, error) {
	g, from, err := d.attemptLease(ctx, ek, dig, asked)
	if err == nil && from == spareLease {
		err, from = d.renewReused(ctx, g), newLease
	}
	if err != nil {
		// A lease alone holds nothing: the key was not touched.
		return attemptGrant{}, err
	}
	return attemptGrant{g, from}, nil
}

// withRenewal runs txn, an attempt's transaction that may put a key on
// g, and renews g beside it if g is a lease a release left. If the
// keep-alive finds the lease, etcd renewed it after the call's start: the
// key, if put, is held at least the TTL from then, whichever of the two
// etcd handled first. If the lease was gone, a put with it either failed
// or was deleted with it: nothing is held.
func (d *locker) withRenewal(ctx context.Context, g attemptGrant, txn func() (*clientv3.TxnResponse, error)) (*clientv3.TxnResponse, error) {
	var renewErr error
	var wg sync.WaitGroup
	if g.from == pooledLease {
		wg.Go(func() { renewErr = d.renewReused(ctx, g.LeaseGrantResponse) })
	}
	resp, err := txn()
	wg.Wait()
	switch {
	case errors.Is(renewErr, errReusedExpired):
		return nil, renewErr
	case renewErr != nil && err == nil:
		// The renewal's outcome is unknown, so is the grant's length,
		// even if etcd refused the keep-alive: the put went through.
		err = fmt.Errorf("%w: renewing the reused lease: %v", driver.ErrOutcomeUnknown, renewErr)
	}
	return resp, err
}

// attemptErr returns the error of an attempt's transaction on ek: the
// lease it would have put ek on was found expired (nothing is held), or
// see unknownPut.
func (d *locker) attemptErr(op, key, ek, dig string, g attemptGrant, asked int64, sent time.Time, err error) error {
	if errors.Is(err, errReusedExpired) {
		return fmt.Errorf("etcddriver: %s %q: %w: %w", op, key, driver.ErrUnavailable, err)
	}
	return d.unknownPut(op, key, ek, dig, g.LeaseGrantResponse, asked, sent, err)
}
