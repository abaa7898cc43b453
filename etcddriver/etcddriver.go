package etcddriver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
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

	ka keepAlives // the one keep-alive stream
}

func newLocker(client *clientv3.Client, opts *Options, owned bool) *locker {
	if opts == nil {
		opts = &Options{}
	}
	d := &locker{client: client, owned: owned, prefix: opts.Prefix, grants: make(map[grantKey]grant), prune: minPrune, spares: make(map[grantKey]grant), pool: make(map[int64][]grant)}
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
// was granted for granted seconds.
func (d *locker) remember(ek, digest string, lease clientv3.LeaseID, asked, granted int64, sent time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.grants) >= d.prune {
		now := time.Now()
		for k, g := range d.grants {
			if now.After(g.stales) {
				delete(d.grants, k)
			}
		}
		d.prune = max(minPrune, 2*len(d.grants))
	}
	// The server keeps a lease up to one check period of its lessor
	// (500 ms) past its TTL; a second of margin covers it.
	d.grants[grantKey{ek, digest}] = grant{lease: lease, asked: asked, granted: granted, stales: sent.Add(time.Duration(granted)*time.Second + time.Second)}
}

func (d *locker) forget(ek, digest string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.grants, grantKey{ek, digest})
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

// valueMagic starts the value of every lock and slot key the driver
// writes.
const valueMagic = "dlock/1"

// lockValue is the value of a lock or slot key: on its first line the
// magic, the digest of the holder's token, the TTL asked for in seconds
// and, for a slot, the semaphore's limit; then the owner.
type lockValue struct {
	digest string
	asked  int64
	limit  int // 0 for a lock
	owner  string
}

func (lv lockValue) encode() string {
	head := valueMagic + " " + lv.digest + " " + strconv.FormatInt(lv.asked, 10)
	if lv.limit > 0 {
		head += " " + strconv.Itoa(lv.limit)
	}
	return head + "\n" + lv.owner
}

// decodeValue parses a lock or slot value; ok is false for a value the
// driver did not write.
func decodeValue(v []byte) (lv lockValue, ok bool) {
	head, owner, found := strings.Cut(string(v), "\n")
	if !found {
		return lv, false
	}
	f := strings.Fields(head)
	if len(f) < 3 || len(f) > 4 || f[0] != valueMagic {
		return lv, false
	}
	asked, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || asked < 1 {
		return lv, false
	}
	lv = lockValue{digest: f[1], asked: asked, owner: owner}
	if len(f) == 4 {
		if lv.limit, err = strconv.Atoi(f[3]); err != nil || lv.limit < 1 {
			return lv, false
		}
	}
	return lv, true
}

// lockKey returns the etcd key of the lock on key.
func (d *locker) lockKey(key string) string { return d.prefix + key }

// slotRange returns the range [lo, hi) of the etcd keys of key's
// semaphore slots: PREFIX+KEY, a NUL byte, then the holder's digest. The
// lock key PREFIX+KEY sorts just before it, so [lockKey, hi) covers the
// lock and its slots, for watches.
func (d *locker) slotRange(key string) (lo, hi string) {
	return d.prefix + key + "\x00", d.prefix + key + "\x01"
}

// slotKey returns the etcd key of the slot of key held by the token of dig.
func (d *locker) slotKey(key, dig string) string {
	lo, _ := d.slotRange(key)
	return lo + dig
}

func (d *locker) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	if err := d.check(); err != nil {
		return driver.Result{}, err
	}
	k, dig, asked := d.lockKey(req.Key), digest(req.Token), seconds(req.TTL)
	lo, hi := d.slotRange(req.Key)
	ctx, cancel := d.bound(ctx)
	defer cancel()
	sent := time.Now()
	g, from, err := d.attemptLease(ctx, k, dig, asked)
	if err == nil && from == spareLease {
		// A waiter's attempt: renewed first. Sent beside the
		// transaction, the renewals of all the waiters a release wakes
		// measured slower (32 waiters, a loaded machine).
		err, from = d.renewReused(ctx, g), newLease
	}
	if err != nil {
		// A lease alone holds nothing: the key was not touched.
		return driver.Result{}, d.notApplied("acquire", req.Key, err)
	}
	// A lease a release left is renewed by a keep-alive sent beside
	// the transaction, so that the acquire costs one round trip. If the
	// keep-alive finds the lease, etcd renewed it after the call's start:
	// the key, if put, is held at least the TTL from then, whichever of
	// the two etcd handled first. If the lease was gone, a put with it
	// either failed or was deleted with it: nothing is held.
	var renewErr error
	var wg sync.WaitGroup
	if from == pooledLease {
		wg.Go(func() { renewErr = d.renewReused(ctx, g) })
	}
	lv := lockValue{digest: dig, asked: asked, owner: req.Owner}
	resp, err := d.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(lo), "=", 0).WithRange(hi)).
		Then(clientv3.OpPut(k, lv.encode(), clientv3.WithLease(g.ID))).
		Else(clientv3.OpGet(k)).
		Commit()
	wg.Wait()
	switch {
	case errors.Is(renewErr, errReusedExpired):
		return driver.Result{}, fmt.Errorf("etcddriver: acquire %q: %w: %w", req.Key, driver.ErrUnavailable, renewErr)
	case renewErr != nil && err == nil:
		// The renewal's outcome is unknown, so is the grant's length,
		// even if etcd refused the keep-alive: the put went through.
		err = fmt.Errorf("%w: renewing the reused lease: %v", driver.ErrOutcomeUnknown, renewErr)
	}
	if err != nil {
		return driver.Result{}, d.unknownPut("acquire", req.Key, k, dig, g, asked, sent, err)
	}
	if resp.Succeeded {
		d.remember(k, dig, g.ID, asked, g.TTL, sent)
		return driver.Result{Acquired: true, Fence: uint64(resp.Header.Revision)}, nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		// The lock key is free, so semaphore slots hold the key.
		d.revokeSpare(ctx, g.ID)
		return driver.Result{}, fmt.Errorf("etcddriver: acquire %q: semaphore slots hold it: %w", req.Key, driver.ErrWrongKind)
	}
	kv := kvs[0]
	if held, ok := decodeValue(kv.Value); ok && held.digest == dig {
		// Held by this token already: the same grant again, renewed.
		if err := d.renewHeld(ctx, req.Key, k, kv, held, asked, g, sent); err != nil {
			return driver.Result{}, err
		}
		return driver.Result{Acquired: true, Fence: uint64(kv.CreateRevision)}, nil
	}
	// Busy: keep the unused lease for the token's next attempt.
	d.keepSpare(k, dig, g, asked, sent)
	return driver.Result{HolderTTL: d.holderTTL(ctx, clientv3.LeaseID(kv.Lease))}, nil
}

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

// toPool keeps the lease of a grant just released (no key is attached to
// it any more) for the next attempt that asks for its TTL, if it will
// not expire within a second.
func (d *locker) toPool(g grant) {
	d.mu.Lock()
	defer d.mu.Unlock()
	// g.stales is a second past the lease's expiry; keep it to a second
	// before.
	g.stales = g.stales.Add(-2 * time.Second)
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
		d.remember(ek, lv.digest, old, asked, granted, sent)
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

func (d *locker) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	if err := d.check(); err != nil {
		return err
	}
	ctx, cancel := d.bound(ctx)
	defer cancel()
	dig := digest(token)
	return d.refresh(ctx, key, d.lockKey(key), dig, seconds(ttl))
}

// refresh renews the grant of ek (the lock or a slot of key) held by the
// token of dig, for asked seconds.
func (d *locker) refresh(ctx context.Context, key, ek, dig string, asked int64) error {
	sent := time.Now()
	if g, ok := d.lookup(ek, dig); ok && g.asked == asked {
		granted, err := d.keepAlive(ctx, g.lease)
		if err != nil {
			return d.wrap("refresh", key, err)
		}
		if granted > 0 {
			d.remember(ek, dig, g.lease, asked, granted, sent)
			return nil
		}
		d.forget(ek, dig)
	}
	return d.refreshRead(ctx, key, ek, dig, asked, sent)
}

// refreshRead refreshes a grant the driver does not remember: it reads
// the key to find the grant's lease.
func (d *locker) refreshRead(ctx context.Context, key, ek, dig string, asked int64, sent time.Time) error {
	kv, lv, err := d.held(ctx, "refresh", key, ek, dig)
	if err != nil {
		return err
	}
	return d.renewHeld(ctx, key, ek, kv, lv, asked, nil, sent)
}

// held reads ek and returns it if the token of dig holds it, else an
// error wrapping ErrNotHeld.
func (d *locker) held(ctx context.Context, op, key, ek, dig string) (*mvccpb.KeyValue, lockValue, error) {
	resp, err := d.client.Get(ctx, ek)
	if err != nil {
		return nil, lockValue{}, d.notApplied(op, key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, lockValue{}, d.notHeld(op, key)
	}
	kv := resp.Kvs[0]
	lv, ok := decodeValue(kv.Value)
	if !ok || lv.digest != dig {
		return nil, lockValue{}, d.notHeld(op, key)
	}
	return kv, lv, nil
}

func (d *locker) Release(ctx context.Context, key, token string) error {
	if err := d.check(); err != nil {
		return err
	}
	ctx, cancel := d.bound(ctx)
	defer cancel()
	return d.release(ctx, key, d.lockKey(key), digest(token))
}

// release revokes the lease of the grant of ek (the lock or a slot of
// key) held by the token of dig, which deletes ek.
func (d *locker) release(ctx context.Context, key, ek, dig string) error {
	if g, ok := d.lookup(ek, dig); ok && !g.uncertain {
		// Delete the key if it is still on the grant's lease, and keep
		// the lease for a later attempt: a keep-alive then renews it,
		// which costs etcd less than a grant and a revoke.
		resp, err := d.client.Txn(ctx).
			If(clientv3.Compare(clientv3.LeaseValue(ek), "=", int64(g.lease))).
			Then(clientv3.OpDelete(ek)).
			Commit()
		if err != nil {
			return d.wrap("release", key, err)
		}
		d.forget(ek, dig)
		if resp.Succeeded {
			d.toPool(g)
			return nil
		}
	} else if ok {
		// The attempt's outcome is unknown, and its put may still be on
		// its way: revoke its lease, which deletes the key if the put
		// was applied and makes it fail if it comes later. The key as
		// it was just before the revoke tells whether the token held
		// it: etcd's revoke deletes the lease's keys at the revision
		// its reply reports (and deletes nothing if it reports the
		// revision of another write).
		rv, err := d.client.Revoke(ctx, g.lease)
		if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return d.wrap("release", key, err)
		}
		d.forget(ek, dig)
		if err == nil && rv.Header.Revision > 1 {
			before, err := d.client.Get(ctx, ek, clientv3.WithRev(rv.Header.Revision-1))
			if err != nil {
				return d.wrap("release", key, err)
			}
			if len(before.Kvs) == 1 && before.Kvs[0].Lease == int64(g.lease) {
				return nil
			}
		}
	}
	kv, _, err := d.held(ctx, "release", key, ek, dig)
	if err != nil {
		return err
	}
	if _, err := d.client.Revoke(ctx, clientv3.LeaseID(kv.Lease)); err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return d.notHeld("release", key)
		}
		return d.wrap("release", key, err)
	}
	return nil
}

func (d *locker) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	if err := d.check(); err != nil {
		return driver.Holder{}, false, err
	}
	ctx, cancel := d.bound(ctx)
	defer cancel()
	// The lock key sorts before its slots: the first key of the range
	// is the lock's, if it is held as a lock.
	_, hi := d.slotRange(key)
	resp, err := d.client.Get(ctx, d.lockKey(key), clientv3.WithRange(hi), clientv3.WithLimit(1))
	if err != nil {
		return driver.Holder{}, false, d.notApplied("inspect", key, err)
	}
	if len(resp.Kvs) == 0 {
		return driver.Holder{}, false, nil
	}
	if string(resp.Kvs[0].Key) != d.lockKey(key) {
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
	return d.refreshBatch(ctx, reqs, func(key, _ string) string { return d.lockKey(key) })
}

// refreshBatch refreshes reqs in one round trip, as Refresh would, the
// grant of each request's etcd key ek(Key, digest of Token).
func (d *locker) refreshBatch(ctx context.Context, reqs []driver.RefreshRequest, ek func(key, dig string) string) []error {
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
		it := item{ek: ek(r.Key, dig), dig: dig, asked: seconds(r.TTL)}
		if g, ok := d.lookup(it.ek, dig); ok && g.asked == it.asked {
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
		case !it.read && ttls[it.lease] > 0:
			d.remember(it.ek, it.dig, it.lease, it.asked, ttls[it.lease], sent)
		default:
			if !it.read {
				d.forget(it.ek, it.dig)
			}
			wg.Go(func() { errs[i] = d.refreshRead(ctx, key, it.ek, it.dig, it.asked, sent) })
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
