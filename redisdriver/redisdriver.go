package redisdriver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redisdriver/internal/autopipe"
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
	pipe    *autopipe.Pipeline // sends the commands of concurrent calls together
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
	d.pipe = autopipe.New(client, freesKey)
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
// goes out even after its caller gave up (see autopipe.New).
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
			cmds[i] = autopipe.QueueOnce(ctx, pipe, append(args, reqs[i].Token, ttlMS, keep))
		}
		pipe.Exec(ctx) // errors are per command
		for _, i := range idx {
			autopipe.MarkUnsent(cmds[i])
		}
	}
	run(send, true)
	var again []int
	for _, i := range send {
		if autopipe.NoScript(cmds[i].Err()) {
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
	n, err := eval(ctx, autopipe.OnceDoer{C: d.client}, raiseFenceScript, []any{nil, nil, 2, lk, fenceKey(lk), token, strconv.FormatUint(fence, 10), d.fenceMS}).Int64()
	return d.heldResult("raise fence", key, lk, n, err)
}

// Close implements driver.Locker. It stops the driver's pub/sub
// connections, and closes the client only if [dlock.Open] made it.
func (d *locker) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	d.notify.close()
	d.pipe.Wait()
	if d.owned && d.client != nil {
		return d.client.Close()
	}
	return nil
}
