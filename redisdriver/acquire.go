package redisdriver

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redisdriver/internal/autopipe"
	"github.com/redis/go-redis/v9"
)

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
		if rerr := d.undo(ctx, req); rerr != nil {
			return driver.Result{}, undoFailed(req.Key, d.wrap("acquire (WAIT)", req.Key, err), rerr)
		}
		return driver.Result{}, d.wrap("acquire (WAIT)", req.Key, err)
	}
	if n, _ := wait.Int64(); n < int64(d.cfg.replicaAcks) {
		err := fmt.Errorf("redisdriver: acquire %q: %d of %d replicas acknowledged within %v",
			req.Key, n, d.cfg.replicaAcks, d.cfg.replicaTimeout)
		if rerr := d.undo(ctx, req); rerr != nil {
			return driver.Result{}, undoFailed(req.Key, err, rerr)
		}
		return driver.Result{}, fmt.Errorf("%w: %w", err, driver.ErrUnavailable)
	}
	return res, nil
}

// undoFailed is the error of an acquire that was granted and then
// refused (err), whose undo failed (undoErr): the key may stay held by the
// request's token, so the outcome is unknown, never ErrUnavailable, and
// the caller releases the token again.
func undoFailed(key string, err, undoErr error) error {
	return fmt.Errorf("%v, and the grant could not be undone (%v): redisdriver: acquire %q: %w", err, undoErr, key, driver.ErrOutcomeUnknown)
}

// undoTimeout bounds the release of a grant whose caller's context has
// ended: one round trip to a master that answers.
const undoTimeout = 250 * time.Millisecond

// undo releases the grant of req that will not become a lease, for
// undoTimeout at most: within the caller's context while it has that
// long left, so the caller's deadline holds, else detached from it: a
// call cut short by the caller's deadline fails a moment before the
// context reports it, and an undo on that context would fail unsent. (Not
// bounded by ReplicaTimeout, a budget for WAIT that may be a few
// milliseconds: an undo cut that short leaves the key held.) The release
// is token-checked: if the grant never happened it costs one harmless
// round trip.
func (d *locker) undo(ctx context.Context, req request) error {
	if deadline, ok := ctx.Deadline(); ctx.Err() != nil || ok && time.Until(deadline) < undoTimeout {
		ctx = context.WithoutCancel(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, undoTimeout)
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
		cmd := autopipe.QueueOnce(ctx, pipe, args)
		wait := autopipe.QueueOnce(ctx, pipe, []any{"WAIT", d.cfg.replicaAcks, waitMS})
		var err error
		if left := d.pipe.Run(ctx, args[3].(string), func(ctx context.Context) { _, err = pipe.Exec(ctx) }); left != nil {
			// The caller left with the pipeline perhaps in flight: the
			// undo that follows waits for it (see pipeline.run).
			cmd, wait = redis.NewCmd(ctx), redis.NewCmd(ctx)
			cmd.SetErr(left)
			wait.SetErr(left)
			return cmd, wait, left
		}
		autopipe.MarkUnsent(cmd)
		autopipe.MarkUnsent(wait)
		return cmd, wait, err
	}
	cmd, wait, err = run(true)
	if autopipe.NoScript(cmd.Err()) {
		cmd, wait, err = run(false)
	}
	return cmd, wait, err
}
