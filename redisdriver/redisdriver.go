package redisdriver

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/redis/go-redis/v9"
)

// ErrWrongType reports that a Redis key the driver needs (a lock key or its
// fence key) holds data of another kind: someone else's data under the
// prefix. The driver never overwrites it. Refresh and Release wrap it
// together with [dlock.ErrNotHeld].
var ErrWrongType = errors.New("dlock: Redis key holds data that is not a dlock lock")

var (
	_ driver.Locker         = (*locker)(nil)
	_ driver.Notifier       = (*locker)(nil)
	_ driver.Inspector      = (*locker)(nil)
	_ driver.BatchRefresher = (*locker)(nil)
	_ driver.FenceRaiser    = (*locker)(nil)
	_ driver.Handoff        = (*locker)(nil)
)

// locker is the driver. It is safe for concurrent use.
type locker struct {
	client  redis.UniversalClient
	cluster *redis.ClusterClient // client as a Cluster client, or nil
	owned   bool                 // Close closes client: Open made it
	cfg     settings
	err     error            // bad configuration, returned by every call
	publish any              // "PUBLISH", or "SPUBLISH" on Cluster; boxed once
	fenceMS any              // cfg.fenceExpiryMS, boxed once
	ms      boxCache[int64]  // the last TTL argument, boxed
	owner   boxCache[string] // the last owner argument, boxed
	notify  *notifier
	pipe    *pipeline // sends the commands of concurrent calls together
	closed  atomic.Bool
}

// New returns a [dlock.Locker] over client, which may be a standalone,
// Sentinel (failover) or Cluster client. opts may be nil for the defaults;
// opts.Lock sets the Locker's lease defaults (invalid ones make every call
// of the Locker fail, as with [dlock.New]).
//
// New does no I/O. It refuses, with an error wrapping [dlock.ErrInvalid],
// a nil client, invalid driver options, and a client whose options leave
// ContextTimeoutEnabled false: such a client ignores the deadlines of
// contexts, and lease renewal relies on them to give up a refresh before
// the lease's deadline. Closing the Locker does not close client, which
// stays the caller's; it closes only what the driver opened itself (its
// pub/sub connections).
func New(client redis.UniversalClient, opts *Options) (*dlock.Locker, error) {
	if err := checkClient(client); err != nil {
		return nil, err
	}
	d := newLocker(client, opts, false)
	if d.err != nil {
		return nil, d.err
	}
	var lock *dlock.Options
	if opts != nil {
		lock = opts.Lock
	}
	return dlock.New(d, lock), nil
}

// NewDriver returns the driver behind [New], for drivers that compose
// others (the redlock driver runs one per node). opts.Lock is ignored.
// The driver does not close client.
func NewDriver(client redis.UniversalClient, opts *Options) driver.Locker {
	return newLocker(client, opts, false)
}

func newLocker(client redis.UniversalClient, opts *Options, owned bool) *locker {
	d := &locker{client: client, owned: owned, publish: "PUBLISH"}
	d.cfg, d.err = opts.resolve()
	d.fenceMS = d.cfg.fenceExpiryMS
	if client == nil {
		d.err = fmt.Errorf("%w: redisdriver: nil client", driver.ErrInvalid)
	}
	if c, ok := client.(*redis.ClusterClient); ok {
		d.cluster = c
		d.publish = "SPUBLISH"
	}
	d.notify = newNotifier(d)
	d.pipe = newPipeline(client)
	return d
}

// Key layout. A lock on KEY is the hash PREFIX{KEY}, its fence key is
// PREFIX{KEY}:fence and its release channel PREFIX{KEY}:released. The
// braces make KEY the Cluster hash tag of all three, so they live on one
// node and one script can use them. Inside the braces, '%', '{' and '}'
// of KEY are written %25, %7B and %7D: the tag then always ends at the
// closing brace that the driver adds, is never empty, and distinct keys
// never share a Redis key.
func (d *locker) lockKey(key string) string {
	lk, _ := d.keyPair(key, "")
	return lk
}

// keyPair returns the lock key of key and the lock key followed by suffix,
// built in one allocation.
func (d *locker) keyPair(key, suffix string) (lk, suffixed string) {
	if strings.ContainsAny(key, "%{}") {
		key = keyEscaper.Replace(key)
	}
	s := d.cfg.prefix + "{" + key + "}" + suffix
	return s[:len(s)-len(suffix)], s
}

var keyEscaper = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")

// queueKeys returns the keys of key that the scripts that queue waiters
// or hand the key to them use: the lock key, its fence key, its queue and
// its queued attempts, built in one allocation.
func (d *locker) queueKeys(key string) (lk, fk, qk, ak string) {
	if strings.ContainsAny(key, "%{}") {
		key = keyEscaper.Replace(key)
	}
	n := len(d.cfg.prefix) + len(key) + 2
	var b strings.Builder
	b.Grow(3*n + len(fenceSuffix) + len(queueSuffix) + len(attemptsSuffix))
	for _, suffix := range [...]string{fenceSuffix, queueSuffix, attemptsSuffix} {
		b.WriteString(d.cfg.prefix)
		b.WriteByte('{')
		b.WriteString(key)
		b.WriteByte('}')
		b.WriteString(suffix)
	}
	s := b.String()
	i := n + len(fenceSuffix)
	j := i + n + len(queueSuffix)
	return s[:n], s[:i], s[i:j], s[j:]
}

// maxFence bounds fences and floors: Lua numbers are doubles, exact
// below 2^53.
const maxFence = 1 << 53

const (
	fenceSuffix    = ":fence"
	queueSuffix    = ":queue"
	attemptsSuffix = ":attempts"
)

func fenceKey(lockKey string) string { return lockKey + fenceSuffix }

// parseTime reads Redis TIME as stored in a lock, "SECONDS MICROSECONDS";
// the zero time if it is not there.
func parseTime(s string) time.Time {
	sec, usec, ok := strings.Cut(s, " ")
	secs, err1 := strconv.ParseInt(sec, 10, 64)
	usecs, err2 := strconv.ParseInt(usec, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return time.Time{}
	}
	return time.Unix(secs, usecs*1000)
}

// channelOf is where releaseScript announces the release of lockKey when
// no queued waiter listens.
func channelOf(lockKey string) string { return lockKey + ":released" }

// queueKey is the queue of waiters of lockKey: a sorted set of waiter tags,
// each scored by its waiter's deadline (ms since the epoch): the time by
// which the waiter attempts again, moved later at each attempt. Entries
// past their deadline are pruned, a few per script (see acquireScript).
func queueKey(lockKey string) string { return lockKey + queueSuffix }

// attemptsKey holds the attempts of the waiters queued at lockKey that
// accept a handoff: a hash from waiter tag to the attempt a release may
// grant the key on (see acquireScript). It shares the queue's expiry, and
// an entry goes with its waiter's queue entry.
func attemptsKey(lockKey string) string { return lockKey + attemptsSuffix }

// waiterChannel is where releaseScript wakes the waiter with tag, alone.
func waiterChannel(lockKey, tag string) string { return lockKey + ":w:" + tag }

// waiterTag names a waiter in its key's queue and channel. Both are
// public, so the tag is a hash of the token, which must stay secret.
func waiterTag(token string) string {
	h := sha256.Sum256([]byte(token))
	var b [2 * waiterTagBytes]byte // one allocation: every release makes one
	hex.Encode(b[:], h[:waiterTagBytes])
	return string(b[:])
}

const waiterTagBytes = 8

func msArg(d time.Duration) int64 { return ceilMS(d) }

// checkToken refuses, before any I/O, a token the driver cannot keep
// secret and exact: an empty one (anyone could then refresh or release the
// lock with "") or one with a newline (the token ends at the first newline
// of the stored lock).
func checkToken(token string) error {
	switch {
	case token == "":
		return fmt.Errorf("%w: redisdriver: empty token", driver.ErrInvalid)
	case strings.Contains(token, "\n"):
		return fmt.Errorf("%w: redisdriver: a token with a newline", driver.ErrInvalid)
	}
	return nil
}

// check returns the configuration error, or an error after Close.
func (d *locker) check() error {
	if d.err != nil {
		return d.err
	}
	if d.closed.Load() {
		return fmt.Errorf("redisdriver: %w", driver.ErrClosed)
	}
	return nil
}

// Acquire implements driver.Locker.
func (d *locker) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	return d.acquire(ctx, request{Request: req})
}

// AcquireQueued implements driver.Handoff.
func (d *locker) AcquireQueued(ctx context.Context, req driver.Request, q driver.Queued) (driver.Result, error) {
	return d.acquire(ctx, request{Request: req, Wait: q.Wait, Attempt: q.Attempt})
}

// AcquireFloor implements redlock.FloorAcquirer (without importing it:
// the method is the contract): the acquire script grants the largest of
// floor (capped at the server's clock plus the TTL), the server's clock in
// µs and one more than the last fence.
func (d *locker) AcquireFloor(ctx context.Context, req driver.Request, floor uint64) (driver.Result, error) {
	return d.acquire(ctx, request{Request: req, FenceFloor: floor})
}

// request is an acquire: a plain one, a queued one (Wait and Attempt, as
// driver.Queued) or one with a fence floor (FenceFloor, not zero).
type request struct {
	driver.Request
	Wait       time.Duration
	Attempt    uint64
	FenceFloor uint64
}

// acquire serves Acquire, AcquireQueued and AcquireFloor.
func (d *locker) acquire(ctx context.Context, req request) (driver.Result, error) {
	if err := d.check(); err != nil {
		return driver.Result{}, err
	}
	if err := checkToken(req.Token); err != nil {
		return driver.Result{}, err
	}
	if req.FenceFloor >= maxFence {
		return driver.Result{}, fmt.Errorf("%w: redisdriver: fence floor %d is not below 2^53, which Redis scripts cannot compare exactly", driver.ErrInvalid, req.FenceFloor)
	}
	if req.NoFence && d.cfg.replicaAcks == 0 {
		res, err := d.acquireBare(ctx, req)
		if res.Acquired && req.Attempt != 0 {
			// Perhaps a grant made on an earlier attempt (a waiting
			// request is queued: see acquireScriptFor), whose message
			// is on its way: it is this lease, never to be released
			// as that of a waiter that lost a grant (see
			// notifier.gone).
			d.notify.acquired(d.lockKey(req.Key), req.Token)
		}
		return res, err
	}
	args := d.acquireArgs(req)
	if d.cfg.replicaAcks > 0 {
		return d.acquireReplicated(ctx, req, args)
	}
	v, err := eval(ctx, d.pipe.Awaited(), acquireScript, args).Result()
	if err != nil {
		return driver.Result{}, d.wrap("acquire", req.Key, err)
	}
	res, err := d.acquireResult(req.Key, args, v)
	if res.Acquired && req.Attempt != 0 {
		// Perhaps a grant made on an earlier attempt, whose message
		// is on its way: it is this lease, never to be released.
		d.notify.acquired(args[3].(string), req.Token)
	}
	return res, err
}

// acquireBare serves a NoFence request without a script, whose start-up
// costs the server more than the command it runs: SET NX takes a free key
// (and answers OK, where a nil reply would cost go-redis a dozen
// allocations to classify). Only a busy key costs a second command:
// acquireBareScript, which also recognizes the holder's own retried
// request and reports the holder's TTL, or for a waiting request the
// fenced script, which queues it. The script's arguments are built only
// then: a free key costs the SET command's arguments alone.
func (d *locker) acquireBare(ctx context.Context, req request) (driver.Result, error) {
	val := req.Token + "\n0\n\n" + req.Owner
	err := d.pipe.Awaited().Do(ctx, "SET", d.lockKey(req.Key), val, "NX", "PX", d.ms.box(msArg(req.TTL))).Err()
	if err == nil {
		return driver.Result{Acquired: true}, nil
	}
	if err != redis.Nil && !isRedisError(err) {
		return driver.Result{}, d.wrap("acquire", req.Key, err)
	}
	args := d.acquireArgs(req)
	v, err := eval(ctx, d.pipe.Awaited(), acquireScriptFor(req), args).Result()
	if err != nil {
		return driver.Result{}, d.wrap("acquire", req.Key, err)
	}
	return d.acquireResult(req.Key, args, v)
}

// acquireScriptFor returns the script that serves req. A waiting request
// without fence takes the fenced script, which queues it, so that it is
// served in turn and may be handed the key like any other waiter: its
// grant's fence is then ignored (dlock gives such a lease fence 0).
func acquireScriptFor(req request) luaScript {
	if req.NoFence && !queued(req) {
		return acquireBareScript
	}
	return acquireScript
}

// queued reports whether req queues its caller (see releaseScript).
func queued(req request) bool { return req.Wait > 0 }

// attemptArg is the attempt number a queued req stores for a handoff, or
// "": a request without one, or with a fence floor (a quorum's node
// request), is never granted by a release, and neither is any with
// ReplicaAcks, whose grants must wait for replicas (see
// errHandoffReplicated).
func (d *locker) attemptArg(req request) any {
	if req.Attempt == 0 || req.FenceFloor != 0 || d.cfg.replicaAcks > 0 {
		return ""
	}
	return strconv.FormatUint(req.Attempt, 10)
}

// acquireArgs returns the call of an acquire script for req (see eval):
// KEYS are the lock, its fence key and, for a waiting request, its queue
// and queued attempts.
func (d *locker) acquireArgs(req request) []any {
	var lk, fk, qk, ak string
	if queued(req) {
		lk, fk, qk, ak = d.queueKeys(req.Key)
	} else {
		lk, fk = d.keyPair(req.Key, fenceSuffix)
	}
	var floor any = ""
	if req.FenceFloor != 0 {
		floor = strconv.FormatUint(req.FenceFloor, 10)
	}
	ttlMS := msArg(req.TTL)
	ttl, owner := d.ms.box(ttlMS), d.owner.box(req.Owner)
	keep := d.fenceKeep(ttl, ttlMS)
	if queued(req) {
		// The waiter's deadline: it attempts again within Wait, or is
		// gone. Twice that and a second leave room for a slow round
		// trip; the queue is kept as long.
		return []any{nil, nil, 4, lk, fk, qk, ak, req.Token, ttl, owner, keep, floor,
			waiterTag(req.Token), msArg(2*req.Wait + time.Second), d.attemptArg(req)}
	}
	return []any{nil, nil, 2, lk, fk, req.Token, ttl, owner, keep, floor}
}

// fenceKeep returns how long a grant or refresh with a TTL of ttlMS
// (boxed: ttl) keeps the fence key: FenceExpiry, and at least the TTL. A
// fence may be up to a TTL ahead of the server's clock (a floor from a
// client whose clock runs ahead), and must stay on record until the clock
// has passed it, or the next grant, from the clock alone, would be lower.
func (d *locker) fenceKeep(ttl any, ttlMS int64) any {
	if ttlMS > d.cfg.fenceExpiryMS {
		return ttl
	}
	return d.fenceMS
}

// acquireResult decodes the reply of an acquire script called with args
// (see acquireScript).
func (d *locker) acquireResult(key string, args []any, v any) (driver.Result, error) {
	switch v := v.(type) {
	case string:
		if other, ok := strings.CutPrefix(v, "!"); ok {
			which, typ, _ := strings.Cut(other, " ")
			if which == "3" {
				return driver.Result{}, fmt.Errorf("%w: redisdriver: acquire %q: the next fence would reach 2^53", driver.ErrInvalid, key)
			}
			redisKey := args[3] // the lock key
			if which == "2" {
				redisKey = args[4] // its fence key
			}
			if which == "1" {
				return driver.Result{}, lockKeyType(key, redisKey, typ, "string")
			}
			return driver.Result{}, wrongType(key, redisKey, typ)
		}
		fence, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return driver.Result{}, fmt.Errorf("redisdriver: acquire %q: bad fence %q in %v", key, v, args[3])
		}
		return driver.Result{Acquired: true, Fence: fence}, nil
	case int64:
		// PTTL counts whole milliseconds, rounded down, and says 0 for a
		// key in its last millisecond, which must not read as "unknown":
		// report at least 1ms. A negative PTTL (no expiry) is unknown.
		var res driver.Result
		if v >= 0 {
			res.HolderTTL = time.Duration(max(v, 1)) * time.Millisecond
		}
		return res, nil
	}
	return driver.Result{}, fmt.Errorf("redisdriver: acquire %q: unexpected reply %v", key, v)
}

func wrongType(key string, redisKey, typ any) error {
	return fmt.Errorf("%w: %q (of lock %q) is a %v", ErrWrongType, redisKey, key, typ)
}

// acquireReplicated runs the acquire script and WAIT in one pipeline on one
// connection (WAIT counts the writes of its own connection), on the node
// that owns the key.
func (d *locker) acquireReplicated(ctx context.Context, req request, args []any) (driver.Result, error) {
	cmd, wait, err := d.runReplicated(ctx, req, args)
	if _, moved := redis.IsMovedError(cmd.Err()); moved && d.cluster != nil {
		// The slot moved since the client last loaded the slot map: the
		// node client follows no redirect, so reload the map (ForEachMaster
		// does, synchronously) and try the new owner once. The command
		// did not run on the old one.
		if rerr := d.cluster.ForEachMaster(ctx, func(context.Context, *redis.Client) error { return nil }); rerr == nil {
			cmd, wait, err = d.runReplicated(ctx, req, args)
		}
	}
	if _, ask := redis.IsAskError(cmd.Err()); ask && d.cluster != nil {
		// A migration in progress: the next attempt finds the slot moved.
		d.cluster.ReloadState(ctx)
	}
	if err := cmd.Err(); err != nil {
		if !isRedisError(err) && !unavailable(err) {
			// The pipeline failed after it was sent (go-redis then puts
			// the read error on every command): the script may have
			// granted the lock, which nobody will get. Undo it.
			d.undo(ctx, req)
		}
		return driver.Result{}, d.wrap("acquire", req.Key, err)
	}
	res, rerr := d.acquireResult(req.Key, args, cmd.Val())
	if rerr != nil || !res.Acquired {
		return res, rerr
	}
	if err == nil {
		err = wait.Err()
	}
	if err != nil {
		// WAIT failed: the lock is held, the replication unknown.
		// Release it, or the next attempt with this token takes it
		// again; either way no lease is handed out.
		d.undo(ctx, req)
		return driver.Result{}, d.wrap("acquire (WAIT)", req.Key, err)
	}
	if n, _ := wait.Int64(); n < int64(d.cfg.replicaAcks) {
		rerr := d.undo(ctx, req)
		err := fmt.Errorf("redisdriver: acquire %q: %d of %d replicas acknowledged within %v: %w",
			req.Key, n, d.cfg.replicaAcks, d.cfg.replicaTimeout, driver.ErrUnavailable)
		if rerr != nil {
			err = fmt.Errorf("%w (and the lock could not be released: %v; it expires on its own)", err, rerr)
		}
		return driver.Result{}, err
	}
	return res, nil
}

// undoTimeout bounds the release of a grant whose caller's context has
// ended: one round trip to a master that answers.
const undoTimeout = 250 * time.Millisecond

// undo releases the grant of req that will not become a lease: within the
// caller's context while it has undoTimeout left (bounded by
// ReplicaTimeout), so the caller's deadline holds, else detached from it
// for undoTimeout at most: a call cut short by the caller's deadline
// fails a moment before the context reports it, and an undo on that
// context would fail unsent. The release is token-checked: if the grant
// never happened it costs one harmless round trip.
func (d *locker) undo(ctx context.Context, req request) error {
	var cancel context.CancelFunc
	if deadline, ok := ctx.Deadline(); ctx.Err() == nil && (!ok || time.Until(deadline) >= undoTimeout) {
		ctx, cancel = context.WithTimeout(ctx, d.cfg.replicaTimeout)
	} else {
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), min(d.cfg.replicaTimeout, undoTimeout))
	}
	defer cancel()
	return d.Release(ctx, req.Key, req.Token)
}

// runReplicated runs an acquire script and WAIT in one pipeline on the
// master of the key (see acquireReplicated).
func (d *locker) runReplicated(ctx context.Context, req request, args []any) (cmd, wait *redis.Cmd, err error) {
	var c redis.Cmdable = d.client
	if d.cluster != nil {
		node, err := d.cluster.MasterForKey(ctx, args[3].(string))
		if err != nil {
			cmd := redis.NewCmd(ctx)
			cmd.SetErr(err)
			return cmd, redis.NewCmd(ctx), err
		}
		c = node
	}
	script := acquireScriptFor(req)
	waitMS := ceilMS(d.cfg.replicaTimeout)
	if deadline, ok := ctx.Deadline(); ok {
		// WAIT ends on the server within half the caller's time left
		// (1 ms at least: 0 would block it for ever), so that its reply
		// comes while the caller waits, and the undo of a grant too few
		// replicas acknowledged follows at once: the pipeline runs to its
		// reply however soon the caller leaves, and the undo of a caller
		// that left waits for that reply (see pipeline.run).
		waitMS = max(1, min(waitMS, time.Until(deadline).Milliseconds()/2))
	}
	run := func(sha bool) (*redis.Cmd, *redis.Cmd, error) {
		pipe := c.Pipeline()
		args[0], args[1] = "evalsha", script.sha
		if !sha {
			args[0], args[1] = "eval", script.src
		}
		cmd := queueOnce(ctx, pipe, args)
		wait := queueOnce(ctx, pipe, []any{"WAIT", d.cfg.replicaAcks, waitMS})
		var err error
		if left := d.pipe.run(ctx, args[3].(string), func(ctx context.Context) { _, err = pipe.Exec(ctx) }); left != nil {
			// The caller left with the pipeline perhaps in flight: the
			// undo that follows waits for it (see pipeline.run).
			cmd, wait = redis.NewCmd(ctx), redis.NewCmd(ctx)
			cmd.SetErr(left)
			wait.SetErr(left)
			return cmd, wait, left
		}
		markUnsent(cmd)
		markUnsent(wait)
		return cmd, wait, err
	}
	cmd, wait, err = run(true)
	if noScript(cmd.Err()) {
		cmd, wait, err = run(false)
	}
	return cmd, wait, err
}

// Refresh implements driver.Locker.
func (d *locker) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	if err := d.check(); err != nil {
		return err
	}
	if err := checkToken(token); err != nil {
		return err
	}
	lk, fk := d.keyPair(key, fenceSuffix)
	ttlMS := msArg(ttl)
	ttlArg := d.ms.box(ttlMS)
	n, err := eval(ctx, d.pipe, refreshScript, []any{nil, nil, 2, lk, fk, token, ttlArg, d.fenceKeep(ttlArg, ttlMS)}).Int64()
	return d.heldResult("refresh", key, lk, n, err)
}

// Release implements driver.Locker: it deletes the lock and wakes the
// key's waiters, or hands the key to the first (see wakeNext).
func (d *locker) Release(ctx context.Context, key, token string) error {
	if err := d.check(); err != nil {
		return err
	}
	if err := checkToken(token); err != nil {
		return err
	}
	lk, fk, qk, ak := d.queueKeys(key)
	n, err := eval(ctx, d.pipe, releaseScript, []any{nil, nil, 4, lk, fk, qk, ak, token, d.publish, d.notify.scope, waiterTag(token)}).Int64()
	if n == 2 && err == nil {
		// Released, but the waiters queued were not listening where the
		// script ran: on Cluster, a node importing the slot, which the
		// client reached by ASK, while the waiters listen on the slot's
		// owner. Wake them there (the client routes by the slot map); a
		// failure leaves them to their own timers.
		if d.cluster != nil {
			d.client.Do(ctx, d.publish, d.notify.releasedChannel(lk), "")
		}
		n = 1
	}
	return d.heldResult("release", key, lk, n, err)
}

// freeing maps the EVALSHA and EVAL arguments of the scripts that free a
// key (a release, or a semaphore slot's) to their source; see freesKey.
var freeing = map[any]any{
	releaseScript.sha: releaseScript.src, releaseScript.src: releaseScript.src,
	releaseSlotScript.sha: releaseSlotScript.src, releaseSlotScript.src: releaseSlotScript.src,
}

// freesKey reports whether the command args runs a script that frees a
// key, and its source: such a command, once the pipeline held it back
// (behind the calls on its key left in flight, or for the next batch),
// goes out even after its caller gave up (see pipeline.follow).
func freesKey(args []any) (src any, ok bool) {
	if len(args) < 2 {
		return nil, false
	}
	if s, _ := args[0].(string); s != "evalsha" && s != "eval" {
		return nil, false
	}
	src, ok = freeing[args[1]]
	return src, ok
}

// heldResult decodes the reply of the scripts that act only for the
// holder: 1 done, 0 not held, -1 wrong type.
func (d *locker) heldResult(op, key, lk string, n int64, err error) error {
	switch {
	case err != nil:
		return d.wrap(op, key, err)
	case n == 1:
		return nil
	case n == -1:
		return fmt.Errorf("redisdriver: %s %q: %w: %w", op, key, driver.ErrNotHeld, wrongType(key, lk, "key of another type"))
	case n == -2:
		return fmt.Errorf("redisdriver: %s %q: %w", op, key, wrongType(key, fenceKey(lk), "key of another type"))
	default:
		return fmt.Errorf("redisdriver: %s %q: %w", op, key, driver.ErrNotHeld)
	}
}

// Inspect implements driver.Inspector.
func (d *locker) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	if err := d.check(); err != nil {
		return driver.Holder{}, false, err
	}
	lk := d.lockKey(key)
	v, err := eval(ctx, d.pipe, inspectScript, []any{nil, nil, 1, lk}).Slice()
	if err != nil {
		return driver.Holder{}, false, d.wrap("inspect", key, err)
	}
	code, _ := v[0].(int64)
	switch {
	case code == 0:
		return driver.Holder{}, false, nil
	case code == -1 && len(v) == 2:
		return driver.Holder{}, false, lockKeyType(key, lk, v[1], "string")
	case code == 1 && len(v) == 5:
		owner, _ := v[1].(string)
		fs, _ := v[2].(string)
		fence, _ := strconv.ParseUint(fs, 10, 64)
		pttl, _ := v[3].(int64)
		since, _ := v[4].(string)
		return driver.Holder{Owner: owner, Fence: fence, TTL: time.Duration(max(pttl, 0)) * time.Millisecond, Since: parseTime(since)}, true, nil
	}
	return driver.Holder{}, false, fmt.Errorf("redisdriver: inspect %q: unexpected reply %v", key, v)
}

// RefreshBatch implements driver.BatchRefresher: all refreshes go out in
// one pipeline (on Cluster, one per node, in parallel).
func (d *locker) RefreshBatch(ctx context.Context, reqs []driver.RefreshRequest) []error {
	errs := make([]error, len(reqs))
	if err := d.check(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	lks := make([]string, 2*len(reqs)) // lock and fence key of each
	for i, r := range reqs {
		lks[2*i], lks[2*i+1] = d.keyPair(r.Key, fenceSuffix)
	}
	var send []int // the requests that go out: those with a valid token
	for i, r := range reqs {
		if errs[i] = checkToken(r.Token); errs[i] == nil {
			send = append(send, i)
		}
	}
	if len(send) == 0 {
		return errs
	}
	cmds := d.refreshPipeline(ctx, refreshScript, reqs, send, func(i int) []string { return lks[2*i : 2*i+2 : 2*i+2] })
	for _, i := range send {
		n, err := cmds[i].Int64()
		errs[i] = d.heldResult("refresh", reqs[i].Key, lks[2*i], n, err)
	}
	return errs
}

// refreshPipeline runs script, a refresh of one lock or slot, for the
// requests of reqs at the indexes in send, in one pipeline: each with
// keysOf(i) and its token, TTL and fence keep. Those the server answers
// NOSCRIPT (it lost its scripts) go again with EVAL. It returns the
// commands, indexed like reqs; errors are per command.
func (d *locker) refreshPipeline(ctx context.Context, script luaScript, reqs []driver.RefreshRequest, send []int, keysOf func(i int) []string) []*redis.Cmd {
	cmds := make([]*redis.Cmd, len(reqs))
	run := func(idx []int, sha bool) {
		pipe := d.client.Pipeline()
		verb, body := "evalsha", script.sha
		if !sha {
			verb, body = "eval", script.src
		}
		for _, i := range idx {
			ttlMS := msArg(reqs[i].TTL)
			keep := d.fenceKeep(ttlMS, ttlMS)
			keys := keysOf(i)
			args := make([]any, 0, 6+len(keys))
			args = append(args, verb, body, len(keys))
			for _, k := range keys {
				args = append(args, k)
			}
			cmds[i] = queueOnce(ctx, pipe, append(args, reqs[i].Token, ttlMS, keep))
		}
		pipe.Exec(ctx) // errors are per command
		for _, i := range idx {
			markUnsent(cmds[i])
		}
	}
	run(send, true)
	var again []int
	for _, i := range send {
		if noScript(cmds[i].Err()) {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		run(again, false)
	}
	return cmds
}

// RaiseFence implements driver.FenceRaiser.
func (d *locker) RaiseFence(ctx context.Context, key, token string, fence uint64) error {
	if err := d.check(); err != nil {
		return err
	}
	if err := checkToken(token); err != nil {
		return err
	}
	if fence >= maxFence {
		return fmt.Errorf("%w: redisdriver: fence %d is above 2^53, which Redis scripts cannot compare exactly", driver.ErrInvalid, fence)
	}
	lk := d.lockKey(key)
	n, err := eval(ctx, onceDoer{d.client}, raiseFenceScript, []any{nil, nil, 2, lk, fenceKey(lk), token, strconv.FormatUint(fence, 10), d.fenceMS}).Int64()
	return d.heldResult("raise fence", key, lk, n, err)
}

// Close implements driver.Locker. It stops the driver's pub/sub
// connections, and closes the client only if [dlock.Open] made it.
func (d *locker) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	d.notify.close()
	d.pipe.wait()
	if d.owned && d.client != nil {
		return d.client.Close()
	}
	return nil
}

// wrap gives a failed call's error its driver meaning: ErrUnavailable only
// when the command surely did not run; an error with Timeout() true when
// its outcome is unknown; the error as it is otherwise, with advice for
// the errors that mean a configuration problem.
func (d *locker) wrap(op, key string, err error) error {
	prefix := "redisdriver: " + op
	if key != "" {
		prefix = fmt.Sprintf("redisdriver: %s %q", op, key)
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", prefix, err)
	case errors.Is(err, redis.ErrClosed):
		// The client was closed under the driver: it never works again,
		// so no retry can help.
		return fmt.Errorf("%s: the Redis client is closed: %w: %w", prefix, driver.ErrClosed, err)
	case d.cluster == nil && isRedirect(err):
		// Not a slot moving: a Cluster node behind a client that is not
		// a Cluster client, which no retry cures.
		return fmt.Errorf("%s: the server is a Redis Cluster node; use a Cluster client (redis+cluster://): %w", prefix, err)
	case unavailable(err):
		return fmt.Errorf("%s: %w: %w", prefix, driver.ErrUnavailable, err)
	case redis.IsAuthError(err):
		return fmt.Errorf("%s: authentication failed (wrong user name or password?): %w", prefix, err)
	case redis.IsPermissionError(err), isScriptPermissionError(err):
		return fmt.Errorf("%s: the Redis user lacks a permission the driver needs (EVAL, EVALSHA, the commands its scripts run, SUBSCRIBE, and keys and channels under %q; see Permissions in the package docs): %w", prefix, d.cfg.prefix, err)
	case isTLSConfigError(err):
		return fmt.Errorf("%s: TLS: %w", prefix, err)
	case isRedisError(err):
		return fmt.Errorf("%s: %w", prefix, err)
	}
	var t interface{ Timeout() bool }
	if errors.As(err, &t) && t.Timeout() {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	// The connection failed after the command may have been sent (EOF,
	// reset): the outcome is unknown, which the contract reports as a
	// timeout.
	return &unknownOutcomeError{op: prefix, err: err}
}

// unknownOutcomeError is a failure after which the command may or may not
// have been applied. Its Timeout method reports true, as the driver
// contract asks for such errors.
type unknownOutcomeError struct {
	op  string
	err error
}

func (e *unknownOutcomeError) Error() string {
	return e.op + ": connection failed, outcome unknown: " + e.err.Error()
}
func (e *unknownOutcomeError) Unwrap() error { return e.err }
func (e *unknownOutcomeError) Timeout() bool { return true }

// unavailable reports whether err means the command surely was not
// applied: a command sent as one attempt had no connection to go out on
// (an [unsentError]), the client is closed, or the server refused the
// command before running it. A dial error or a pool timeout alone is not
// enough: after a retry by go-redis it says nothing of the earlier
// attempts, which may have been written and run.
func unavailable(err error) bool {
	var unsent *unsentError
	switch {
	case errors.Is(err, redis.ErrClosed):
		return true
	case errors.As(err, &unsent):
		return true
	case errors.Is(err, driver.ErrUnavailable):
		// The dialer's own verdict, such as a TLS handshake that got
		// no TLS answer (redisurl.NotTLSError): no connection, no command.
		return true
	case redis.IsLoadingError(err), redis.IsClusterDownError(err), redis.IsTryAgainError(err),
		redis.IsReadOnlyError(err), redis.IsMasterDownError(err), redis.IsMaxClientsError(err),
		redis.IsNoReplicasError(err), redis.IsOOMError(err):
		return true
	case redis.HasErrorPrefix(err, "BUSY "), redis.HasErrorPrefix(err, "MISCONF "):
		// A script runs past busy-reply-threshold (BUSY), or the
		// server stopped taking writes after a failed save (MISCONF):
		// refused before running, and go-redis has no typed test.
		return true
	}
	// A redirect means the node does not serve the key: it ran nothing.
	return isRedirect(err)
}

// isRedirect reports a MOVED or ASK reply.
func isRedirect(err error) bool {
	_, moved := redis.IsMovedError(err)
	_, ask := redis.IsAskError(err)
	return moved || ask
}

// isScriptPermissionError reports a command refused by the ACL inside a
// script: Redis 7.0 and Valkey answer it with ERR, not NOPERM, each in
// its own words.
func isScriptPermissionError(err error) bool {
	return redis.HasErrorPrefix(err, "The user executing the script can't") ||
		redis.HasErrorPrefix(err, "ACL failure in script")
}

func isRedisError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

func isTLSConfigError(err error) bool {
	var (
		cv  *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		hn  x509.HostnameError
		rh  tls.RecordHeaderError
		alt tls.AlertError
	)
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &rh) || errors.As(err, &alt)
}
