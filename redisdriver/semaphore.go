package redisdriver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dlock-go/dlock/driver"
)

var _ driver.Semaphore = (*locker)(nil)

// Semaphore layout. The slots of a semaphore on KEY live in the lock's own
// key, PREFIX{KEY}, as a sorted set of the holders' tokens scored by their
// expiry (the server's TIME in µs since the epoch), next to the hash
// PREFIX{KEY}:slots, which maps each token to "FENCE\nSINCE\nOWNER" and the
// field "\nlimit" (no token has a newline) to the limit the holders were
// granted under, and "\nfence" to the last fence granted to a holder (a
// fence key lost while slots are held, evicted, is put back from it). The
// fence key PREFIX{KEY}:fence and the release channel
// are the lock's: fences of a key increase across its locks and slots, and
// waiters of either are woken the same way. Sharing the lock key makes a
// key one kind or the other: a lock's scripts find a sorted set there and
// refuse (ErrWrongType), and the slot scripts refuse a string. All keys
// share the hash tag, so the scripts work on Redis Cluster.
//
// Every script reads the server's TIME: holders whose expiry has passed
// are never counted, and are dropped by the following acquires, at most
// slotPrune each (all at once, by UNLINK, when none is alive), so that no
// script does more than a bounded amount of work, whatever the limit;
// nothing ever scans the keyspace. Both keys expire with the last holder, so an idle semaphore
// leaves nothing behind but its fence key, which expires as a lock's does.
const slotsSuffix = ":slots"

// slotClock, prepended to the slot scripts, reads TIME into nowus (µs) and
// f (the same, as digits), live (the score range of live holders: not
// '(' .. nowus, which Lua writes with 14 digits, dozens of µs off), and
// defines keep(), which makes both keys expire with the last holder, and
// wrongType(), which returns the refusal when KEYS[1] and KEYS[3] are not a
// sorted set and a hash or absent. The scripts call wrongType only when a
// reply left the types in doubt (an error from a read, or nothing found),
// and read both keys before writing either: the common path of a call
// runs no TYPE at all.
const slotClock = `
local t = redis.call('TIME')
local nowus = tonumber(t[1]) * 1000000 + tonumber(t[2])
local f = t[1] .. string.sub('00000' .. t[2], -6)
local live = '(' .. f
local function wrongType()
  local ty = redis.call('TYPE', KEYS[1]).ok
  if ty ~= 'zset' and ty ~= 'none' then return '!1 ' .. ty end
  ty = redis.call('TYPE', KEYS[3]).ok
  if ty ~= 'hash' and ty ~= 'none' then return '!4 ' .. ty end
end
local function keep()
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if last[2] then
    local ms = math.ceil((tonumber(last[2]) - nowus) / 1000) + 1
    redis.call('PEXPIRE', KEYS[1], ms)
    redis.call('PEXPIRE', KEYS[3], ms)
  end
end
local function fenceOf(v) return string.sub(v, 1, string.find(v, '\n', 1, true) - 1) end
local function fenceMax(a, b)
  if not b or not string.find(b, '^%d+$') then return a end
  if not a or #b > #a or #b == #a and b > a then return b end
  return a
end
`

// slotPrune bounds the expired holders one acquire drops one by one: with
// a large limit, thousands may expire together, and dropping them all in
// one script blocked the server for 83ms at MaxLimit (see
// TestSemaphorePruneBounded).
const slotPrune = "100"

// acquireSlotScript takes a slot of KEYS[1] for ARGV[1] (token) for ARGV[2]
// ms with owner ARGV[3], under limit ARGV[5]; KEYS[2] is the fence key,
// kept for ARGV[4] ms (FenceExpiry, and at least the TTL, as for a lock:
// see fenceKeep), KEYS[3] the holders' hash. It first drops the
// holders whose expiry passed, up to slotPrune of them (the others on
// later calls; they count for nothing meanwhile), or all at once with
// UNLINK when none is alive. Reply: the fence, a string of digits, when
// granted (or held by the token already: same fence, TTL reset); the time
// in ms until the first holder expires, an integer, when the slots are
// full; "!5 LIMIT" when the holders have another limit; "!1 TYPE", "!2
// TYPE", "!4 TYPE" when the key, the fence key or the hash holds other
// data; "!3" when the fence would reach 2^53. The fence is the lock's:
// the largest of TIME in µs and one more than the last fence of the key.
var acquireSlotScript = newScript(isFence + slotClock + `
local dead = redis.pcall('ZRANGEBYSCORE', KEYS[1], '-inf', nowus, 'LIMIT', 0, ` + slotPrune + `)
if dead.err then return wrongType() or dead end
local lim = redis.pcall('HGET', KEYS[3], '` + "\\nlimit" + `')
if type(lim) == 'table' then return wrongType() or lim end
if dead[1] then
  redis.call('ZREM', KEYS[1], unpack(dead))
  redis.call('HDEL', KEYS[3], unpack(dead))
end
local n = redis.call('ZCOUNT', KEYS[1], live, '+inf')
if n == 0 then
  redis.call('UNLINK', KEYS[1], KEYS[3])
elseif lim and lim ~= ARGV[5] then
  return '!5 ' .. lim
end
local exp = nowus + tonumber(ARGV[2]) * 1000
local mine = redis.call('HGET', KEYS[3], ARGV[1])
local sc = redis.call('ZSCORE', KEYS[1], ARGV[1])
if mine and sc and tonumber(sc) > nowus then
  redis.call('ZADD', KEYS[1], exp, ARGV[1])
  keep()
  return fenceOf(mine)
end
if n >= tonumber(ARGV[5]) then
  local first = redis.call('ZRANGEBYSCORE', KEYS[1], live, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  return math.max(1, math.ceil((tonumber(first[2]) - nowus) / 1000))
end
local last = redis.pcall('GET', KEYS[2])
if type(last) == 'table' then
  if string.sub(last.err, 1, 10) ~= 'WRONGTYPE ' then return last end
  return '!2 ' .. redis.call('TYPE', KEYS[2]).ok
end
if last and not isFence(last) then return '!2 string that is not a fence' end
last = fenceMax(last, redis.call('HGET', KEYS[3], '\nfence'))
if last and (#last > #f or #last == #f and last >= f) then f = string.format('%.0f', tonumber(last) + 1) end
if not isFence(f) then return '!3' end
redis.call('ZADD', KEYS[1], exp, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], f .. '\n' .. t[1] .. ' ' .. t[2] .. '\n' .. ARGV[3], '` + "\\nlimit" + `', ARGV[5], '\nfence', f)
redis.call('SET', KEYS[2], f, 'PX', ARGV[4])
keep()
return f
`)

// slotHeld, appended to slotClock, returns 0 unless ARGV[1] holds a live
// slot of KEYS[1], and sets mine to its hash entry. Its two reads show
// both keys' types when the slot is held; otherwise it asks wrongType.
const slotHeld = `
local s = redis.pcall('ZSCORE', KEYS[1], ARGV[1])
if type(s) == 'table' then return wrongType() or s end
local mine = s and tonumber(s) > nowus and redis.pcall('HGET', KEYS[3], ARGV[1])
if type(mine) == 'table' then return wrongType() or mine end
if not mine then return wrongType() or 0 end
`

// refreshSlotScript resets ARGV[1]'s slot of KEYS[1] to expire ARGV[2] ms
// from now, and keeps the fence key KEYS[2] at least as long, at least at
// the last fence granted to the semaphore's holders (not the slot's own: a
// later slot's may be larger), re-arming it for ARGV[3] ms only when less
// than ARGV[2] ms is left on it, as refreshScript does for a lock. Reply:
// 1 done; 0 not held; "!1 TYPE" / "!4 TYPE" other data.
var refreshSlotScript = newScript(isFence + slotClock + slotHeld + `
redis.call('ZADD', KEYS[1], 'XX', nowus + tonumber(ARGV[2]) * 1000, ARGV[1])
keep()
local fs = fenceMax(fenceOf(mine), redis.call('HGET', KEYS[3], '\nfence'))
local last = redis.pcall('GET', KEYS[2])
if not last or isFence(last) and (#last < #fs or #last == #fs and last < fs) then
  redis.call('SET', KEYS[2], fs, 'PX', ARGV[3])
elseif isFence(last) and redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return 1
`)

// releaseSlotScript frees ARGV[1]'s slot of KEYS[1] (the keys then expire
// with the holders left, not with the one released) and wakes every
// subscriber of the key with command ARGV[2] (PUBLISH or SPUBLISH) on the
// lock's release channel, scoped by ARGV[3]. KEYS[2] is unused (the fence
// key, for the same key layout as the others). Reply as
// refreshSlotScript's.
var releaseSlotScript = newScript(slotClock + slotHeld + `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('DEL', KEYS[3]) else keep() end
redis.call(ARGV[2], KEYS[1] .. ':released' .. ARGV[3], '')
return 1
`)

// inspectSlotsScript reports the live holders of KEYS[1], earliest expiry
// first, never their tokens. Reply: {LIMIT, PTTL, "FENCE\nSINCE\nOWNER",
// PTTL, …} with LIMIT 0 when none holds a slot; "!1 TYPE" / "!4 TYPE"
// other data.
var inspectSlotsScript = newScript(slotClock + `
local live = redis.pcall('ZRANGEBYSCORE', KEYS[1], live, '+inf', 'WITHSCORES')
if live.err then return wrongType() or live end
if not live[1] then return wrongType() or {0} end
local lim = redis.pcall('HGET', KEYS[3], '` + "\\nlimit" + `')
if type(lim) == 'table' then return wrongType() or lim end
local out = {tonumber(lim or 0)}
for i = 1, #live, 2 do
  local v = redis.call('HGET', KEYS[3], live[i])
  if v then
    out[#out + 1] = math.max(0, math.floor((tonumber(live[i + 1]) - nowus) / 1000))
    out[#out + 1] = v
  end
end
return out
`)

// slotKeys returns the keys of the slot scripts for key: the lock key, its
// fence key and its holders' hash.
func (d *locker) slotKeys(key string) (lk, fk, hk string) {
	lk, fk = d.keyPair(key, fenceSuffix)
	return lk, fk, lk + slotsSuffix
}

// errSlotsReplicated refuses semaphores with replica acknowledgements,
// which they do not implement yet.
var errSlotsReplicated = fmt.Errorf("redisdriver: semaphores with replica_acks: %w", errors.ErrUnsupported)

// AcquireSlot implements [driver.Semaphore].
func (d *locker) AcquireSlot(ctx context.Context, req driver.Request, limit int) (driver.Result, error) {
	if err := d.checkSlots(req.Token); err != nil {
		return driver.Result{}, err
	}
	if err := driver.CheckLimit(limit); err != nil {
		return driver.Result{}, fmt.Errorf("redisdriver: %w", err)
	}
	lk, fk, hk := d.slotKeys(req.Key)
	ttlMS := msArg(req.TTL)
	ttl := d.ms.box(ttlMS)
	v, err := eval(ctx, d.pipe.Awaited(), acquireSlotScript, []any{nil, nil, 3, lk, fk, hk,
		req.Token, ttl, d.owner.box(req.Owner), d.fenceKeep(ttl, ttlMS), limit}).Result()
	if err != nil {
		return driver.Result{}, d.wrap("acquire slot", req.Key, err)
	}
	switch v := v.(type) {
	case string:
		if other, ok := strings.CutPrefix(v, "!"); ok {
			return driver.Result{}, slotRefusal(req.Key, limit, lk, fk, hk, other)
		}
		fence, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return driver.Result{}, fmt.Errorf("redisdriver: acquire slot %q: bad fence %q", req.Key, v)
		}
		return driver.Result{Acquired: true, Fence: fence}, nil
	case int64:
		return driver.Result{HolderTTL: time.Duration(max(v, 1)) * time.Millisecond}, nil
	}
	return driver.Result{}, fmt.Errorf("redisdriver: acquire slot %q: unexpected reply %v", req.Key, v)
}

// slotRefusal decodes a "!N ..." reply of the slot scripts.
func slotRefusal(key string, limit int, lk, fk, hk, reply string) error {
	which, detail, _ := strings.Cut(reply, " ")
	switch which {
	case "1":
		return lockKeyType(key, lk, detail, "zset")
	case "2":
		return wrongType(key, fk, detail)
	case "3":
		return fmt.Errorf("%w: redisdriver: acquire slot %q: the next fence would reach 2^53", driver.ErrInvalid, key)
	case "4":
		return wrongType(key, hk, detail)
	case "5":
		return fmt.Errorf("redisdriver: acquire slot %q: %w: its holders have limit %s, this acquire %d", key, driver.ErrLimitMismatch, detail, limit)
	}
	return fmt.Errorf("redisdriver: semaphore %q: unexpected reply %q", key, reply)
}

// lockKeyType is wrongType for the lock key lk of key, found holding typ
// by a call of the kind that stores mine there ("string" for a lock,
// "zset" for a semaphore). The other of the two is the other kind of dlock
// key, reported with [driver.ErrWrongKind] too, so that callers can tell
// clients that disagree on the kind (a limit of 1 against one above) from
// someone else's data.
func lockKeyType(key string, lk, typ any, mine string) error {
	err := wrongType(key, lk, typ)
	if t, _ := typ.(string); t != mine && (t == "zset" || t == "string") {
		return fmt.Errorf("%w (%w)", err, driver.ErrWrongKind)
	}
	return err
}

// checkSlots refuses, before any I/O, what the slot scripts cannot serve.
func (d *locker) checkSlots(token string) error {
	if err := d.check(); err != nil {
		return err
	}
	if d.cfg.replicaAcks > 0 {
		return errSlotsReplicated
	}
	return checkToken(token)
}

// slotResult decodes the reply of refreshSlotScript or releaseSlotScript.
func (d *locker) slotResult(op, key, lk, fk, hk string, v any, err error) error {
	if err != nil {
		return d.wrap(op, key, err)
	}
	switch v := v.(type) {
	case int64:
		if v == 1 {
			return nil
		}
		return fmt.Errorf("redisdriver: %s %q: %w", op, key, driver.ErrNotHeld)
	case string:
		if other, ok := strings.CutPrefix(v, "!"); ok {
			return fmt.Errorf("redisdriver: %s %q: %w: %w", op, key, driver.ErrNotHeld, slotRefusal(key, 0, lk, fk, hk, other))
		}
	}
	return fmt.Errorf("redisdriver: %s %q: unexpected reply %v", op, key, v)
}

// RefreshSlot implements [driver.Semaphore].
func (d *locker) RefreshSlot(ctx context.Context, key, token string, ttl time.Duration) error {
	if err := d.checkSlots(token); err != nil {
		return err
	}
	lk, fk, hk := d.slotKeys(key)
	ttlMS := msArg(ttl)
	v, err := eval(ctx, d.pipe, refreshSlotScript, []any{nil, nil, 3, lk, fk, hk, token, ttlMS, d.fenceKeep(ttlMS, ttlMS)}).Result()
	return d.slotResult("refresh slot", key, lk, fk, hk, v, err)
}

// RefreshSlots implements [driver.Semaphore]: all refreshes go out in one
// pipeline (on Cluster, one per node, in parallel).
func (d *locker) RefreshSlots(ctx context.Context, reqs []driver.RefreshRequest) []error {
	errs := make([]error, len(reqs))
	keys := make([][3]string, len(reqs))
	var send []int
	for i, r := range reqs {
		if errs[i] = d.checkSlots(r.Token); errs[i] == nil {
			send = append(send, i)
			keys[i][0], keys[i][1], keys[i][2] = d.slotKeys(r.Key)
		}
	}
	if len(send) == 0 {
		return errs
	}
	cmds := d.refreshPipeline(ctx, refreshSlotScript, reqs, send, func(i int) []string { return keys[i][:] })
	for _, i := range send {
		v, err := cmds[i].Result()
		errs[i] = d.slotResult("refresh slot", reqs[i].Key, keys[i][0], keys[i][1], keys[i][2], v, err)
	}
	return errs
}

// ReleaseSlot implements [driver.Semaphore]; it wakes every subscriber of
// the key.
func (d *locker) ReleaseSlot(ctx context.Context, key, token string) error {
	if err := d.checkSlots(token); err != nil {
		return err
	}
	lk, fk, hk := d.slotKeys(key)
	v, err := eval(ctx, d.pipe, releaseSlotScript, []any{nil, nil, 3, lk, fk, hk, token, d.publish, d.notify.scope}).Result()
	return d.slotResult("release slot", key, lk, fk, hk, v, err)
}

// InspectSlots implements [driver.Semaphore].
func (d *locker) InspectSlots(ctx context.Context, key string) ([]driver.Holder, int, error) {
	if err := d.check(); err != nil {
		return nil, 0, err
	}
	lk, fk, hk := d.slotKeys(key)
	v, err := eval(ctx, d.pipe, inspectSlotsScript, []any{nil, nil, 3, lk, fk, hk}).Result()
	if err != nil {
		return nil, 0, d.wrap("inspect slots", key, err)
	}
	if s, ok := v.(string); ok {
		return nil, 0, slotRefusal(key, 0, lk, fk, hk, strings.TrimPrefix(s, "!"))
	}
	vs, ok := v.([]any)
	if !ok || len(vs)%2 != 1 {
		return nil, 0, fmt.Errorf("redisdriver: inspect slots %q: unexpected reply %v", key, v)
	}
	limit, _ := vs[0].(int64)
	var hs []driver.Holder
	for i := 1; i+1 < len(vs); i += 2 {
		pttl, _ := vs[i].(int64)
		val, _ := vs[i+1].(string)
		fs, rest, _ := strings.Cut(val, "\n")
		since, owner, _ := strings.Cut(rest, "\n")
		fence, _ := strconv.ParseUint(fs, 10, 64)
		hs = append(hs, driver.Holder{Owner: owner, Fence: fence, TTL: time.Duration(pttl) * time.Millisecond, Since: parseTime(since)})
	}
	return hs, int(limit), nil
}
