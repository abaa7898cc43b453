package etcddriver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Options configure the driver. A nil *Options means the defaults.
type Options struct {
	// Prefix starts every etcd key the driver writes: a lock on KEY lives
	// at PREFIX+KEY. Give each application its own prefix when several
	// share a cluster, and grant its etcd user read and write on the
	// prefix's range (see Permissions in the package docs).
	// Default: "dlock/". URL: the path, /PREFIX.
	Prefix string

	// CallTimeout bounds each method's calls to etcd, so that a call to
	// a member that stopped answering (paused, or cut off by a network
	// that drops packets) fails in time instead of waiting for the
	// caller's context, which may have no deadline: the next attempt,
	// retried by dlock, then goes to another member. It also bounds
	// Subscribe's wait for etcd to confirm the watch. Default: 5s. URL:
	// call_timeout.
	CallTimeout time.Duration

	// Lock configures the [dlock.Locker] that [New] returns; nil means
	// dlock's defaults. [NewDriver] ignores it.
	Lock *dlock.Options
}

// Defaults of [Options].
const (
	DefaultPrefix      = "dlock/"
	DefaultCallTimeout = 5 * time.Second
)

var (
	_ driver.Locker         = (*locker)(nil)
	_ driver.Notifier       = (*locker)(nil)
	_ driver.Inspector      = (*locker)(nil)
	_ driver.BatchRefresher = (*locker)(nil)
)

// New returns a dlock.Locker over client. The Locker does not close
// client: the caller closes it after the Locker.
func New(client *clientv3.Client, opts *Options) *dlock.Locker {
	var lock *dlock.Options
	if opts != nil {
		lock = opts.Lock
	}
	return dlock.New(NewDriver(client, opts), lock)
}

// NewDriver returns the driver behind [New], for wrappers and tests.
// opts.Lock is ignored. The driver does not close client.
func NewDriver(client *clientv3.Client, opts *Options) driver.Locker {
	return newLocker(client, opts, false)
}

// locker is the driver. It is safe for concurrent use.
type locker struct {
	client *clientv3.Client
	leases etcdserverpb.LeaseClient // for keep-alive streams of our own
	owned  bool                     // Close closes client
	prefix string
	limit  time.Duration // Options.CallTimeout
	err    error         // a bad option or client, reported by every call

	// base ends at Close; subscriptions' watches run under it.
	base   context.Context
	stop   context.CancelFunc
	subsWG sync.WaitGroup

	mu     sync.Mutex
	closed bool
	grants map[grantKey]grant // this driver's grants; see grant
	prune  int                // len(grants) at which remember next drops stale grants
	spares map[grantKey]grant // leases of busy lock attempts, for the token's next; see attemptLease
	pool   map[int64][]grant  // leases of released grants by TTL asked, for any next attempt; see release
	pooled uint64             // leases given to toPool so far (see rememberIf)
	// handoffs are the lock waiters' subscriptions, by their token's
	// entry (see SubscribeHandoff).
	handoffs map[grantKey]*handoffSub
	// names are the names of the tokens' entries, and slots the slot
	// numbers in use, by key (see names.go).
	instance string
	names    map[nameKey]*entryName
	slots    map[string]map[int]bool
	burned   map[string]bool // names never handed out again (burnName)

	ka keepAlives // the one keep-alive stream
}

func newLocker(client *clientv3.Client, opts *Options, owned bool) *locker {
	if opts == nil {
		opts = &Options{}
	}
	d := &locker{client: client, owned: owned, prefix: opts.Prefix, grants: make(map[grantKey]grant), prune: minPrune, spares: make(map[grantKey]grant), pool: make(map[int64][]grant), handoffs: make(map[grantKey]*handoffSub),
		instance: newInstance(), names: make(map[nameKey]*entryName), slots: make(map[string]map[int]bool), burned: make(map[string]bool)}
	if d.prefix == "" {
		d.prefix = DefaultPrefix
	}
	d.limit = opts.CallTimeout
	switch {
	case d.limit == 0:
		d.limit = DefaultCallTimeout
	case d.limit < 0:
		d.err = fmt.Errorf("%w: etcddriver: CallTimeout %v is negative", driver.ErrInvalid, d.limit)
	}
	if client == nil {
		d.err = fmt.Errorf("%w: etcddriver: nil client", driver.ErrInvalid)
	} else {
		d.leases = clientv3.RetryLeaseClient(client)
	}
	d.base, d.stop = context.WithCancel(context.Background())
	return d
}

// grantKey names a grant in the driver's memory: its etcd key (a lock's
// or a slot's) and the digest of its token (the driver keeps no token).
type grantKey struct{ ek, digest string }

// grant is what the driver remembers of a grant it made or renewed: the
// etcd lease the key is attached to, so that Refresh and Release take one
// round trip (a keep-alive of that lease, or a transaction that deletes
// the key if it is still on it) instead of two (a read of the key first).
// A lease serves one grant at a time: the driver reuses the lease of a
// released grant (see toPool) only once its key is deleted and the grant
// forgotten. So a keep-alive of a lease that still exists renews a key
// still attached to it. When the lease is gone the driver forgets the
// grant and reads the key to decide (it may have moved to another lease
// of the same token, by a Refresh with another TTL made through another
// driver).
type grant struct {
	lease   clientv3.LeaseID
	asked   int64     // the TTL in seconds the lease was asked for
	granted int64     // the TTL in seconds etcd granted
	stales  time.Time // after it, the lease is surely gone unless renewed
	// uncertain marks the lease of an attempt whose outcome is unknown
	// (see unknownPut): its put may still come, so Release revokes it.
	uncertain bool
	// queued marks the entry of a waiter (see AcquireQueued) that the
	// driver has not seen become the holder: Release checks whether it
	// holds before it reports success.
	queued bool
}

// minPrune is the least number of remembered grants before remember looks
// for stale ones to drop.
const minPrune = 64

// bound returns ctx bounded by the call timeout, and with the etcd
// client's require-leader flag: a member that lost its leader refuses at
// once (ErrNoLeader, which is ErrUnavailable here) instead of waiting.
func (d *locker) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, d.limit)
	return clientv3.WithRequireLeader(ctx), cancel
}

func (d *locker) check() error {
	if d.err != nil {
		return d.err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("etcddriver: %w", driver.ErrClosed)
	}
	return nil
}

func (d *locker) lookup(ek, digest string) (grant, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	g, ok := d.grants[grantKey{ek, digest}]
	return g, ok
}

// remember records a grant renewed by a request sent at sent, whose lease
// was granted for granted seconds. A grant whose entry has another
// driver's name is not recorded: that driver may release it and pool its
// lease (toPool) for another token's grant, which a keep-alive of the
// lease, taken for this token's refresh, would then renew. Calls of its
// token read the key's entries instead.
func (d *locker) remember(ek, digest string, lease clientv3.LeaseID, asked, granted int64, sent time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rememberLocked(ek, digest, lease, asked, granted, sent)
}

// rememberLocked is remember, under mu.
func (d *locker) rememberLocked(ek, digest string, lease clientv3.LeaseID, asked, granted int64, sent time.Time) {
	if !d.ownName(ek) {
		return
	}
	if len(d.grants) >= d.prune {
		now := time.Now()
		for k, g := range d.grants {
			if now.After(g.stales) {
				delete(d.grants, k)
				d.gcGrant(k)
			}
		}
		d.prune = max(minPrune, 2*len(d.grants))
	}
	d.adoptName(ek, digest)
	// The server keeps a lease up to one check period of its lessor
	// (500 ms) past its TTL; a second of margin covers it.
	d.grants[grantKey{ek, digest}] = grant{lease: lease, asked: asked, granted: granted, stales: sent.Add(time.Duration(granted)*time.Second + time.Second)}
}

func (d *locker) forget(ek, digest string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.grants, grantKey{ek, digest})
	d.gcGrant(grantKey{ek, digest})
}

// digest returns the text that stands for token in etcd: its SHA-256,
// shortened to 128 bits. The token itself is a secret and never leaves
// the process; anyone who can read the key sees only the digest.
func digest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:16])
}

// seconds returns ttl in whole seconds, rounded up: etcd leases count
// whole seconds, and the server's expiry must never come before the
// holder's local deadline, which is counted with ttl itself.
func seconds(ttl time.Duration) int64 {
	s := int64((ttl + time.Second - 1) / time.Second)
	return max(s, 1)
}

func (d *locker) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
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

// refresh renews the grant of ek (the lock or a slot of key) held by the
// token of dig, for asked seconds.
func (d *locker) refresh(ctx context.Context, key, ek, dig string, asked int64) error {
	sent := time.Now()
	if g, ok := d.lookup(ek, dig); ok && g.holds(asked) {
		granted, err := d.keepAlive(ctx, g.lease)
		if err != nil {
			return d.wrap("refresh", key, err)
		}
		if granted > 0 && d.renewed(ek, dig, g.lease, granted, sent) {
			return nil
		}
		if granted <= 0 {
			d.forget(ek, dig)
		}
	}
	return d.refreshRead(ctx, key, dig, asked, sent)
}

// holds reports whether a keep-alive of g's lease alone renews a grant
// of asked seconds: g is a holder's grant of that TTL. The lease of an
// attempt of unknown outcome, or of a waiter's entry, is alive whether or
// not its token holds the key.
func (g grant) holds(asked int64) bool {
	return g.asked == asked && !g.uncertain && !g.queued
}

// renewed records the renewal, by a keep-alive sent at sent, of the grant
// of ek of the token of dig on lease, which etcd granted for granted
// seconds, if the driver still remembers that grant; it reports whether
// it did. A release made meanwhile forgot the grant and kept its lease,
// alive and free, for another token's attempt: recording it again would
// make the token's next Refresh renew that lease and report the key held.
func (d *locker) renewed(ek, dig string, lease clientv3.LeaseID, granted int64, sent time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	gk := grantKey{ek, dig}
	g, ok := d.grants[gk]
	if !ok || g.lease != lease {
		return false
	}
	g.granted, g.stales, g.queued = granted, sent.Add(time.Duration(granted)*time.Second+time.Second), false
	d.grants[gk] = g
	return true
}

// refreshRead refreshes a grant the driver does not remember: it reads
// the entries of key to find the token's, and its lease.
func (d *locker) refreshRead(ctx context.Context, key, dig string, asked int64, sent time.Time) error {
	kv, lv, err := d.held(ctx, "refresh", key, dig)
	if err != nil {
		return err
	}
	return d.renewHeld(ctx, key, string(kv.Key), kv, lv, asked, nil, sent)
}

// held reads the entries of key and returns the token of dig's, if it
// has one and it holds the key (a waiter's entry does not), else an
// error wrapping ErrNotHeld. The entry's name may be another driver's.
func (d *locker) held(ctx context.Context, op, key, dig string) (*mvccpb.KeyValue, lockValue, error) {
	lo, hi := d.entryRange(key)
	resp, err := d.client.Get(ctx, lo, byCreate(hi, 0)...)
	if err != nil {
		return nil, lockValue{}, d.notApplied(op, key, err)
	}
	kv := entryOf(resp.Kvs, dig)
	if kv == nil || !holds(resp.Kvs, string(kv.Key)) {
		return nil, lockValue{}, d.notHeld(op, key)
	}
	lv, _ := decodeValue(kv.Value)
	return kv, lv, nil
}

func (d *locker) Release(ctx context.Context, key, token string) error {
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

// release deletes ek, the entry of key of the token of dig (a lock's
// holder or waiter, or a semaphore's slot), and nothing of another
// token's: a name may serve another token once the driver that made it
// forgot this one's grant. Its lease, free of keys then, is kept for a later attempt (see
// deleted).
func (d *locker) release(ctx context.Context, key, ek, dig string) error {
	g, ok := d.lookup(ek, dig)
	if ok && g.uncertain {
		if done, err := d.releaseUncertain(ctx, key, ek, dig, g); done || err != nil {
			return err
		}
		ok = false
	}
	if !ok || g.queued {
		return d.releaseChecked(ctx, key, ek, dig)
	}
	// A grant the driver made or renewed as the holder's: an entry that
	// is first stays first until it is deleted.
	if !d.ownName(ek) {
		// Another driver's name, which it may give another token once
		// it forgot this one's.
		return d.releaseChecked(ctx, key, ek, dig)
	}
	// A name of this driver serves no other token while the driver
	// remembers the grant: whatever is there is the token's entry (a
	// plain delete, which costs etcd less than a transaction's compare).
	resp, err := d.client.Delete(ctx, ek, clientv3.WithPrevKV())
	if err != nil {
		// The delete may land later, after a release that succeeds
		// frees the name: the name must then serve no other token,
		// whose entry it would delete.
		d.mu.Lock()
		d.burnName(ek)
		d.mu.Unlock()
		return d.wrap("release", key, err)
	}
	if len(resp.PrevKvs) == 0 {
		// Gone; perhaps made again by another driver of the token.
		d.forget(ek, dig)
		return d.releaseChecked(ctx, key, ek, dig)
	}
	d.deleted(ctx, ek, dig, resp.PrevKvs[0])
	return nil
}

// releaseChecked deletes ek, the entry of key of the token of dig, in a
// transaction that reads the entries first: the token may be a waiter,
// whose release deletes its entry but reports ErrNotHeld. An entry of the
// token found under another name (another driver's) is deleted by a
// second transaction.
func (d *locker) releaseChecked(ctx context.Context, key, ek, dig string) error {
	lo, hi := d.entryRange(key)
	for range 2 {
		resp, err := d.client.Txn(ctx).
			If(digestIs(ek, dig)...).
			Then(clientv3.OpGet(lo, byCreate(hi, 0)...), clientv3.OpDelete(ek, clientv3.WithPrevKV())).
			Else(clientv3.OpGet(lo, byCreate(hi, 0)...)).
			Commit()
		if err != nil {
			return d.wrap("release", key, err)
		}
		kvs := resp.Responses[0].GetResponseRange().GetKvs()
		if !resp.Succeeded {
			d.forget(ek, dig)
			kv := entryOf(kvs, dig)
			if kv == nil {
				return d.notHeld("release", key)
			}
			ek = string(kv.Key)
			continue
		}
		d.deleted(ctx, ek, dig, resp.Responses[1].GetResponseDeleteRange().PrevKvs[0])
		if !holds(kvs, ek) {
			return d.notHeld("release", key)
		}
		return nil
	}
	return d.notHeld("release", key)
}

// holds reports whether ek is among the holders of kvs, the entries of a
// key in create-revision order: the first for a lock, the first limit for
// a semaphore (the limit in ek's value).
func holds(kvs []*mvccpb.KeyValue, ek string) bool {
	for i, kv := range kvs {
		if string(kv.Key) == ek {
			lv, _ := decodeValue(kv.Value)
			return i < max(lv.limit, 1)
		}
	}
	return false
}

// releaseUncertain releases the grant g of an attempt whose outcome is
// unknown, and whose put may still be on its way: it revokes g's lease,
// which deletes ek if the put was applied and makes it fail if it comes
// later. The key as it was just before the revoke tells whether the
// token held it: etcd's revoke deletes the lease's keys at the revision
// its reply reports (and deletes nothing if it reports the revision of
// another write), and whether it held it then (it may have been a
// waiter's entry). done reports that the release is over; otherwise the
// caller deletes ek.
func (d *locker) releaseUncertain(ctx context.Context, key, ek, dig string, g grant) (done bool, err error) {
	rv, err := d.client.Revoke(ctx, g.lease)
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return false, d.wrap("release", key, err)
	}
	d.forget(ek, dig)
	if err == nil && rv.Header.Revision > 1 {
		lo, hi := d.entryRange(key)
		before, err := d.client.Get(ctx, lo, append(byCreate(hi, 0), clientv3.WithRev(rv.Header.Revision-1))...)
		if err != nil {
			return false, d.wrap("release", key, err)
		}
		for _, kv := range before.Kvs {
			// The name and the lease alone do not tell the token: a
			// name of this driver and a lease of its pool, both
			// reused, were another token's grant before.
			if string(kv.Key) != ek || kv.Lease != int64(g.lease) || !isToken(kv, dig) {
				continue
			}
			if !holds(before.Kvs, ek) {
				return true, d.notHeld("release", key)
			}
			return true, nil
		}
	}
	return false, nil
}

func (d *locker) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	if err := d.check(); err != nil {
		return driver.Holder{}, false, err
	}
	ctx, cancel := d.bound(ctx)
	defer cancel()
	// The first entry by create revision holds a lock.
	lo, hi := d.entryRange(key)
	resp, err := d.client.Get(ctx, lo, byCreate(hi, 1)...)
	if err != nil {
		return driver.Holder{}, false, d.notApplied("inspect", key, err)
	}
	if len(resp.Kvs) == 0 {
		return driver.Holder{}, false, nil
	}
	if isSlot(resp.Kvs[0]) {
		return driver.Holder{}, false, fmt.Errorf("etcddriver: inspect %q: semaphore slots hold it: %w", key, driver.ErrWrongKind)
	}
	h, ok, err := d.holder(ctx, resp.Kvs[0])
	if err != nil {
		return driver.Holder{}, false, d.notApplied("inspect", key, err)
	}
	return h, ok, nil
}

// holder describes the holder of kv, a lock or slot key; ok is false if
// its lease has expired.
func (d *locker) holder(ctx context.Context, kv *mvccpb.KeyValue) (h driver.Holder, ok bool, err error) {
	lv, _ := decodeValue(kv.Value)
	h = driver.Holder{Owner: lv.owner, Fence: uint64(kv.CreateRevision)}
	if kv.Lease != 0 {
		r, err := d.client.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
		if err != nil {
			return h, false, err
		}
		if r.TTL < 0 {
			// Expired; the server deletes the key at its next check.
			return h, false, nil
		}
		h.TTL = time.Duration(r.TTL+1) * time.Second
	}
	return h, true, nil
}

func (d *locker) RefreshBatch(ctx context.Context, reqs []driver.RefreshRequest) []error {
	return d.refreshBatch(ctx, reqs)
}

// refreshBatch refreshes reqs in one round trip, as Refresh would, the
// grant of each request's entry.
func (d *locker) refreshBatch(ctx context.Context, reqs []driver.RefreshRequest) []error {
	errs := make([]error, len(reqs))
	if err := d.check(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	ctx, cancel := d.bound(ctx)
	defer cancel()
	sent := time.Now()
	type item struct {
		ek, dig string
		asked   int64
		lease   clientv3.LeaseID
		read    bool // needs a read of the key: not remembered, or another TTL
	}
	items := make([]item, len(reqs))
	var ids []clientv3.LeaseID
	for i, r := range reqs {
		dig := digest(r.Token)
		ek, unpin := d.pinName(r.Key, dig)
		defer unpin()
		it := item{ek: ek, dig: dig, asked: seconds(r.TTL)}
		if g, ok := d.lookup(it.ek, dig); ok && g.holds(it.asked) {
			it.lease = g.lease
			ids = append(ids, g.lease)
		} else {
			it.read = true
		}
		items[i] = it
	}
	var ttls map[clientv3.LeaseID]int64
	if len(ids) > 0 {
		var err error
		if ttls, err = d.keepAliveAll(ctx, ids); err != nil {
			err = d.wrap("refresh", "(batch)", err)
			for i, it := range items {
				if !it.read {
					errs[i] = err
				}
			}
		}
	}
	var wg sync.WaitGroup
	for i, it := range items {
		key := reqs[i].Key
		switch {
		case errs[i] != nil:
		case !it.read && ttls[it.lease] > 0 && d.renewed(it.ek, it.dig, it.lease, ttls[it.lease], sent):
		default:
			if !it.read && ttls[it.lease] <= 0 {
				d.forget(it.ek, it.dig)
			}
			wg.Go(func() { errs[i] = d.refreshRead(ctx, key, it.dig, it.asked, sent) })
		}
	}
	wg.Wait()
	return errs
}

func (d *locker) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.stop()
	d.subsWG.Wait()
	if d.owned && d.client != nil {
		return d.client.Close()
	}
	return nil
}

func (d *locker) notHeld(op, key string) error {
	return fmt.Errorf("etcddriver: %s %q: %w", op, key, driver.ErrNotHeld)
}

// notApplied wraps the error of a call that changed no lock (a read, or
// a grant of a lease no key is attached to): whatever happened to the
// call, the lock was not touched, so it is ErrUnavailable, with the
// context's error kept in the chain.
func (d *locker) notApplied(op, key string, err error) error {
	return fmt.Errorf("etcddriver: %s %q: %w: %w", op, key, driver.ErrUnavailable, err)
}

// wrap wraps the error of a call that may have changed a lock: it is
// ErrUnavailable only when etcd surely refused it (no leader, too many
// requests, not capable); otherwise the outcome is unknown.
func (d *locker) wrap(op, key string, err error) error {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("etcddriver: %s %q: %w", op, key, err)
	case errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrTooManyRequests),
		errors.Is(err, rpctypes.ErrNotCapable), errors.Is(err, rpctypes.ErrGRPCNoLeader):
		return fmt.Errorf("etcddriver: %s %q: %w: %w", op, key, driver.ErrUnavailable, err)
	}
	return fmt.Errorf("etcddriver: %s %q: %w: %w", op, key, driver.ErrOutcomeUnknown, err)
}
