package etcddriver

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dlock-go/dlock/driver"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var _ driver.Semaphore = (*locker)(nil)

// AcquireSlot implements [driver.Semaphore]: in one transaction, it puts
// the caller's entry (unless its token has one) and reads every entry of
// the key in revision order; the caller holds a slot if fewer than limit
// entries are older than its own, and none of them is a lock's. See
// Semaphores in the package documentation.
func (d *locker) AcquireSlot(ctx context.Context, req driver.Request, limit int) (driver.Result, error) {
	if err := d.check(); err != nil {
		return driver.Result{}, err
	}
	if err := driver.CheckLimit(limit); err != nil {
		return driver.Result{}, err
	}
	dig, asked := digest(req.Token), seconds(req.TTL)
	sk, unpin := d.pinName(req.Key, dig)
	defer unpin()
	lo, hi := d.entryRange(req.Key)
	ctx, cancel := d.bound(ctx)
	defer cancel()
	sent := time.Now()
	g, from, err := d.attemptLease(ctx, sk, dig, asked)
	if err == nil && from != newLease {
		err = d.renewReused(ctx, g)
	}
	if err != nil {
		return driver.Result{}, d.notApplied("acquire slot", req.Key, err)
	}
	lv := lockValue{digest: dig, asked: asked, limit: limit, owner: req.Owner}
	resp, err := d.client.Txn(ctx).
		Then(clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(sk), "=", 0)},
			[]clientv3.Op{clientv3.OpPut(sk, lv.encode(), clientv3.WithLease(g.ID))},
			[]clientv3.Op{clientv3.OpGet(sk)}),
			clientv3.OpGet(lo, clientv3.WithRange(hi), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))).
		Commit()
	if err != nil {
		return driver.Result{}, d.unknownPut("acquire slot", req.Key, sk, dig, g, asked, sent, err)
	}
	inner := resp.Responses[0].GetResponseTxn()
	slots := resp.Responses[1].GetResponseRange().GetKvs()
	// kv is the token's entry from before, if it has one; spare the
	// attempt's lease, if no key is attached to it.
	var kv *mvccpb.KeyValue
	spare := g
	switch {
	case !inner.Succeeded:
		kv = inner.Responses[0].GetResponseRange().GetKvs()[0]
		if !isToken(kv, dig) {
			d.revokeSpare(ctx, g.ID)
			return driver.Result{}, d.nameTaken("acquire slot", req.Key, sk)
		}
	default:
		// An entry of the token under another driver's name: the new
		// one goes, the token keeps its place.
		for _, o := range slots {
			if string(o.Key) != sk && isToken(o, dig) {
				kv = o
				break
			}
		}
		if kv != nil {
			if err := d.dropSlot(ctx, req.Key, g.ID, nil); err != nil {
				return driver.Result{}, err
			}
			spare = nil
		}
	}
	if kv != nil {
		// The token has a slot key already: the same grant again.
		held, _ := decodeValue(kv.Value)
		if held.limit != limit {
			if spare != nil {
				d.revokeSpare(ctx, spare.ID)
			}
			return driver.Result{}, d.mismatch(req.Key, limit, held.limit)
		}
		if !holds(slots, string(kv.Key)) {
			// A waiting entry, left by a busy attempt whose drop
			// failed (see dropSlot): it holds no slot, and goes as
			// that drop would have made it go.
			if spare != nil {
				d.revokeSpare(ctx, spare.ID)
			}
			d.forget(string(kv.Key), dig)
			return driver.Result{}, d.dropSlot(ctx, req.Key, clientv3.LeaseID(kv.Lease), nil)
		}
		if err := d.renewHeld(ctx, req.Key, string(kv.Key), kv, held, asked, spare, sent); err != nil {
			return driver.Result{}, err
		}
		return driver.Result{Acquired: true, Fence: uint64(kv.CreateRevision)}, nil
	}
	older := 0
	for _, kv := range slots {
		if string(kv.Key) == sk {
			break
		}
		older++
		if !isSlot(kv) {
			return driver.Result{}, d.dropSlot(ctx, req.Key, g.ID, fmt.Errorf("etcddriver: acquire slot %q: a lock holds it: %w", req.Key, driver.ErrWrongKind))
		}
		if other, ok := decodeValue(kv.Value); ok && other.limit != limit {
			return driver.Result{}, d.dropSlot(ctx, req.Key, g.ID, d.mismatch(req.Key, limit, other.limit))
		}
	}
	if older >= limit {
		var wg sync.WaitGroup
		var ttl time.Duration
		wg.Go(func() { ttl = d.holderTTL(ctx, clientv3.LeaseID(slots[0].Lease)) })
		err := d.dropSlot(ctx, req.Key, g.ID, nil)
		wg.Wait()
		return driver.Result{HolderTTL: ttl}, err
	}
	d.remember(sk, dig, g.ID, asked, g.TTL, sent)
	return driver.Result{Acquired: true, Fence: uint64(resp.Header.Revision)}, nil
}

// dropSlot deletes the slot key of a refused attempt by revoking its
// lease, and returns why (nil: busy). If the revoke fails, the outcome of
// the attempt is unknown to the caller, whom it leaves a slot key that
// counts against the limit until it expires: dlock then undoes the
// attempt with a ReleaseSlot of its token.
func (d *locker) dropSlot(ctx context.Context, key string, lease clientv3.LeaseID, why error) error {
	return d.dropEntry(ctx, "acquire slot", key, lease, why)
}

// nameTaken is the error of an attempt whose entry's name holds another
// token's entry: a grant this driver forgot (its lease renewed elsewhere
// by the token's holder). Nothing was written; the token's next attempt
// takes another name.
func (d *locker) nameTaken(op, key, ek string) error {
	d.mu.Lock()
	d.burnName(ek)
	d.mu.Unlock()
	return fmt.Errorf("etcddriver: %s %q: %w: the entry name %q is another token's", op, key, driver.ErrUnavailable, ek)
}

func (d *locker) mismatch(key string, limit, held int) error {
	return fmt.Errorf("etcddriver: acquire slot %q with limit %d: its slots are held under limit %d: %w", key, limit, held, driver.ErrLimitMismatch)
}

// RefreshSlot implements [driver.Semaphore]: as Refresh, on the slot key.
func (d *locker) RefreshSlot(ctx context.Context, key, token string, ttl time.Duration) error {
	if err := d.check(); err != nil {
		return err
	}
	ctx, cancel := d.bound(ctx)
	defer cancel()
	dig := digest(token)
	ek, unpin := d.pinName(key, dig)
	defer unpin()
	return d.refresh(ctx, key, ek, dig, seconds(ttl))
}

// RefreshSlots implements [driver.Semaphore]: as RefreshBatch, on the
// slot keys, in one round trip.
func (d *locker) RefreshSlots(ctx context.Context, reqs []driver.RefreshRequest) []error {
	return d.refreshBatch(ctx, reqs)
}

// ReleaseSlot implements [driver.Semaphore]: as Release, on the slot key.
func (d *locker) ReleaseSlot(ctx context.Context, key, token string) error {
	if err := d.check(); err != nil {
		return err
	}
	ctx, cancel := d.bound(ctx)
	defer cancel()
	dig := digest(token)
	ek, unpin := d.pinName(key, dig)
	defer unpin()
	return d.release(ctx, key, ek, dig)
}

// InspectSlots implements [driver.Semaphore]: it reads the slot keys and
// the TTLs of their leases, and reports the limit oldest (the holders),
// earliest expiry first.
func (d *locker) InspectSlots(ctx context.Context, key string) ([]driver.Holder, int, error) {
	if err := d.check(); err != nil {
		return nil, 0, err
	}
	ctx, cancel := d.bound(ctx)
	defer cancel()
	lo, hi := d.entryRange(key)
	resp, err := d.client.Get(ctx, lo, clientv3.WithRange(hi), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return nil, 0, d.notApplied("inspect slots", key, err)
	}
	kvs := resp.Kvs
	if slices.ContainsFunc(kvs, func(kv *mvccpb.KeyValue) bool { return !isSlot(kv) }) {
		return nil, 0, fmt.Errorf("etcddriver: inspect slots %q: a lock holds it: %w", key, driver.ErrWrongKind)
	}
	if len(kvs) == 0 {
		return nil, 0, nil
	}
	first, _ := decodeValue(kvs[0].Value)
	limit := max(first.limit, 1)
	kvs = kvs[:min(len(kvs), limit)]
	holders := make([]driver.Holder, len(kvs))
	live := make([]bool, len(kvs))
	errs := make([]error, len(kvs))
	var wg sync.WaitGroup
	for i, kv := range kvs {
		wg.Go(func() { holders[i], live[i], errs[i] = d.holder(ctx, kv) })
	}
	wg.Wait()
	var out []driver.Holder
	for i, h := range holders {
		if errs[i] != nil {
			return nil, 0, d.notApplied("inspect slots", key, errs[i])
		}
		if live[i] {
			out = append(out, h)
		}
	}
	if len(out) == 0 {
		return nil, 0, nil
	}
	slices.SortStableFunc(out, func(a, b driver.Holder) int { return cmp.Compare(a.TTL, b.TTL) })
	return out, first.limit, nil
}
