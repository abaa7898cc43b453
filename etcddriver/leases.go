package etcddriver

import (
	"context"
	"errors"
	"time"

	"github.com/dlock-go/dlock/driver"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// attemptLease returns the lease for an attempt on ek by the token of
// dig: the lease the token's last busy attempt on ek left (see
// keepSpare), or one a release left (see toPool), both not yet renewed
// (from is spareLease or pooledLease, and TTL is what etcd last
// granted); or a new lease.
// The caller renews a reused lease with a keep-alive sent after the
// call's start, and counts on the grant only if that keep-alive found the
// lease (see Acquire).
func (d *locker) attemptLease(ctx context.Context, ek, dig string, asked int64) (g *clientv3.LeaseGrantResponse, from leaseSource, err error) {
	d.mu.Lock()
	sp, ok := d.spares[grantKey{ek, dig}]
	delete(d.spares, grantKey{ek, dig})
	d.gcGrant(grantKey{ek, dig})
	now := time.Now()
	ok = ok && sp.asked == asked && now.Before(sp.stales)
	from = spareLease
	for !ok && len(d.pool[asked]) > 0 {
		free := d.pool[asked]
		sp, d.pool[asked] = free[len(free)-1], free[:len(free)-1]
		ok, from = now.Before(sp.stales), pooledLease
	}
	d.mu.Unlock()
	if ok {
		return &clientv3.LeaseGrantResponse{ID: sp.lease, TTL: sp.granted}, from, nil
	}
	g, err = d.client.Grant(ctx, asked)
	return g, newLease, err
}

// leaseSource tells where attemptLease found a lease.
type leaseSource int

const (
	newLease    leaseSource = iota // granted for the attempt
	spareLease                     // left by the token's busy attempt (keepSpare)
	pooledLease                    // left by a release (toPool)
	heldLease                      // the token's entry's, renewed (entryLease)
)

// renewReused renews a reused lease g with a keep-alive, and reports an
// error if it was not found (it expired: a put with it failed, or was
// undone by its expiry) or the keep-alive failed.
func (d *locker) renewReused(ctx context.Context, g *clientv3.LeaseGrantResponse) error {
	granted, err := d.keepAlive(ctx, g.ID)
	switch {
	case err != nil:
		return err
	case granted <= 0:
		return errReusedExpired
	}
	g.TTL = granted
	return nil
}

// errReusedExpired reports a reused lease that expired before its renewal.
var errReusedExpired = errors.New("the reused lease expired before its renewal")

// poolSize bounds the released leases the driver keeps for each TTL.
const poolSize = 16

// poolGen returns the number of leases toPool was given so far.
func (d *locker) poolGen() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pooled
}

// rememberIf is remember, unless toPool was given a lease since
// poolGen returned gen.
func (d *locker) rememberIf(gen uint64, ek, digest string, lease clientv3.LeaseID, asked, granted int64, sent time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pooled == gen {
		d.rememberLocked(ek, digest, lease, asked, granted, sent)
	}
}

// toPool keeps the lease of a grant just released (no key is attached to
// it any more) for the next attempt that asks for its TTL, if it will
// not expire within a second.
func (d *locker) toPool(g grant) {
	d.mu.Lock()
	defer d.mu.Unlock()
	// g.stales is a second past the lease's expiry; keep it to a second
	// before.
	g.stales = g.stales.Add(-2 * time.Second)
	d.pooled++
	if len(d.pool[g.asked]) < poolSize && time.Now().Before(g.stales) {
		d.pool[g.asked] = append(d.pool[g.asked], g)
	}
}

// keepSpare keeps the lease g of a busy lock attempt sent at sent, for
// the token's next attempt on ek. No key is attached to it, and no grant
// refers to it; if the token makes no further attempt, it expires.
func (d *locker) keepSpare(ek, dig string, g *clientv3.LeaseGrantResponse, asked int64, sent time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.spares) >= minPrune {
		now := time.Now()
		for k, sp := range d.spares {
			if now.After(sp.stales) {
				delete(d.spares, k)
				d.gcGrant(k)
			}
		}
	}
	// Past stales the lease may be gone: a second before its expiry.
	d.spares[grantKey{ek, dig}] = grant{lease: g.ID, asked: asked, granted: g.TTL, stales: sent.Add(time.Duration(g.TTL-1) * time.Second)}
}

// unknownPut returns the error of a transaction that may have put ek
// for the token of dig on lease g. If its outcome is unknown, the put may
// yet be applied, later than any read a Release of the token would make:
// the driver remembers g as the grant's lease, so that the Release (dlock
// makes one at once) revokes it, which deletes ek if the put was applied
// and makes the put fail if it comes later. A known failure leaves g to
// expire.
func (d *locker) unknownPut(op, key, ek, dig string, g *clientv3.LeaseGrantResponse, asked int64, sent time.Time, err error) error {
	err = d.wrap(op, key, err)
	if driver.OutcomeUnknown(err) {
		d.remember(ek, dig, g.ID, asked, g.TTL, sent)
		d.mu.Lock()
		if gr, ok := d.grants[grantKey{ek, dig}]; ok {
			gr.uncertain = true
			d.grants[grantKey{ek, dig}] = gr
		}
		d.mu.Unlock()
	}
	return err
}

// revokeSpare revokes a lease that no key was attached to. Failure is
// harmless: it expires by itself.
func (d *locker) revokeSpare(ctx context.Context, id clientv3.LeaseID) {
	if ctx.Err() == nil {
		d.client.Revoke(ctx, id)
	}
}

// holderTTL returns the time left on lease, rounded up to the second (etcd
// reports whole seconds, rounded down), or 0 if unknown.
func (d *locker) holderTTL(ctx context.Context, lease clientv3.LeaseID) time.Duration {
	if lease == clientv3.NoLease || ctx.Err() != nil {
		return 0
	}
	r, err := d.client.TimeToLive(ctx, lease)
	if err != nil || r.TTL < 0 {
		return 0
	}
	return time.Duration(r.TTL+1) * time.Second
}

// renewHeld renews the grant kv of the etcd key ek (the lock or a slot of
// key), held by the token of lv.digest, for asked seconds: with a
// keep-alive of its lease if the lease was asked for that TTL, else by
// moving the key onto a lease of the new TTL (spare, if it has a lease,
// else a new one) and revoking the old lease, since an etcd lease keeps
// the TTL it was granted with. The key keeps its create revision, and so
// its fence. sent is when the caller's request was sent.
func (d *locker) renewHeld(ctx context.Context, key, ek string, kv *mvccpb.KeyValue, lv lockValue, asked int64, spare *clientv3.LeaseGrantResponse, sent time.Time) error {
	old := clientv3.LeaseID(kv.Lease)
	if lv.asked == asked {
		if spare != nil {
			defer d.revokeSpare(ctx, spare.ID)
		}
		granted, err := d.keepAlive(ctx, old)
		switch {
		case err != nil:
			return d.wrap("refresh", key, err)
		case granted <= 0:
			return d.notHeld("refresh", key)
		}
		if !d.ownName(ek) {
			return nil // not recorded (see remember)
		}
		// A release of the token by this driver may have deleted the
		// entry after it was read, and kept the lease, alive and free,
		// in the pool: the renewal stands before that release, but
		// the grant must not be recorded again (the token's next
		// Refresh would renew the pooled lease and report the key
		// held). Recorded only if the entry is still on the lease
		// after the keep-alive, and no lease went to the pool since
		// that was checked.
		gen := d.poolGen()
		if d.attached(ctx, old, ek) {
			d.rememberIf(gen, ek, lv.digest, old, asked, granted, sent)
		}
		return nil
	}
	if spare == nil {
		g, err := d.client.Grant(ctx, asked)
		if err != nil {
			return d.notApplied("refresh", key, err)
		}
		spare = g
	}
	lv.asked = asked
	resp, err := d.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(ek), "=", kv.CreateRevision),
			clientv3.Compare(clientv3.LeaseValue(ek), "=", kv.Lease)).
		Then(clientv3.OpPut(ek, lv.encode(), clientv3.WithLease(spare.ID))).
		Commit()
	if err != nil {
		return d.wrap("refresh", key, err)
	}
	if !resp.Succeeded {
		d.revokeSpare(ctx, spare.ID)
		return d.notHeld("refresh", key)
	}
	d.remember(ek, lv.digest, spare.ID, asked, spare.TTL, sent)
	// The old lease holds no key now; if this revoke fails it expires.
	d.revokeSpare(ctx, old)
	return nil
}

// attached reports whether ek is still attached to lease, after a
// keep-alive of it (false if that cannot be read: the grant is then
// not recorded, and the token's next call reads the key).
func (d *locker) attached(ctx context.Context, lease clientv3.LeaseID, ek string) bool {
	r, err := d.client.TimeToLive(ctx, lease, clientv3.WithAttachedKeys())
	if err != nil {
		return false
	}
	for _, k := range r.Keys {
		if string(k) == ek {
			return true
		}
	}
	return false
}

// keepAlive renews lease once and returns the TTL it was granted with,
// or 0 if it does not exist.
func (d *locker) keepAlive(ctx context.Context, lease clientv3.LeaseID) (int64, error) {
	ttls, err := d.keepAliveAll(ctx, []clientv3.LeaseID{lease})
	if err != nil {
		return 0, err
	}
	return ttls[lease], nil
}

// toErr turns an error of a raw gRPC call into the client's errors.
func toErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return rpctypes.Error(err)
}
