package redisdriver

import (
	"context"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts. Each runs atomically on the node that owns the lock key;
// every key a script touches shares the lock key's hash tag, so they work on
// Redis Cluster.
//
// A lock is a string "TOKEN\nFENCE\nSINCE\nOWNER" with a PX expiry, where
// SINCE is the server's TIME at the grant ("SECONDS MICROSECONDS"), set with SET NX
// so that taking a free key is one command; the fence key is a string
// holding the last fence granted. The common paths stay short because the
// server's time per script, not the round trip, is what a lock costs beyond
// a bare SET NX: acquiring a free key is TIME, SET GET (fence), SET NX;
// refreshing is GET, PEXPIRE; releasing is GET, DEL, PUBLISH. SET GET needs
// Redis 6.2 or later.
//
// A key of another type where a lock should be, or a string that is not in
// the lock format (someone else's data), is reported as a normal reply,
// {-1, type} or -1, never overwritten: redis.pcall turns the WRONGTYPE
// error into a value the script can test.
//
// Fences are microseconds since the epoch, below 2^53 until the year 2255,
// so Lua's doubles hold them exactly; string.format('%.0f') prints them
// without an exponent.

// acquireScript takes KEYS[1] (lock) for ARGV[1] (token) for ARGV[2] ms with
// owner ARGV[3]; KEYS[2] is the fence key, kept for ARGV[4] ms. The fence
// is the larger of one more than the last fence and ARGV[5] (the request's
// FenceFloor), or the server's TIME in microseconds if ARGV[5] is empty.
// A waiting caller also passes KEYS[3], the key's queue of waiters, its
// waiter tag ARGV[6] and the queue's expiry ARGV[7] ms: a busy attempt
// queues the tag (keeping its place if queued already), a grant removes it.
// Reply: the fence, a string of digits, when acquired (or already held by
// the token: same fence, TTL reset); the holder's PTTL, an integer, when
// held by another token; "!1 TYPE" when the lock key holds other data, "!2
// TYPE" when the fence key does. (Plain values, not a table, which would
// cost the server more to build than the rest of a grant but a SET.)
//
// The fence key is set to the candidate fence with SET GET, before the lock
// is tried: on the common path (the clock is ahead of the last fence) that
// is one command where GET and SET would be two, and raising the fence key
// on an attempt that then finds the key busy is harmless, since fences only
// need to increase. Fences are compared as strings of digits (by length,
// then lexically), which spares Lua the number formatting of the common path.
var acquireScript = newScript(`
local t = redis.call('TIME')
local f = ARGV[5]
if f == '' then f = t[1] .. string.sub('00000' .. t[2], -6) end
local last = redis.pcall('SET', KEYS[2], f, 'PX', ARGV[4], 'GET')
if type(last) == 'table' then return '!2 ' .. redis.call('TYPE', KEYS[2]).ok end
if last and (#last > #f or #last == #f and last >= f) and tonumber(last) then
  f = string.format('%.0f', tonumber(last) + 1)
  redis.call('SET', KEYS[2], f, 'PX', ARGV[4])
end
if redis.call('SET', KEYS[1], ARGV[1] .. '\n' .. f .. '\n' .. t[1] .. ' ' .. t[2] .. '\n' .. ARGV[3], 'NX', 'PX', ARGV[2]) then
  if KEYS[3] then redis.pcall('ZREM', KEYS[3], ARGV[6]) end
  return f
end
if KEYS[3] then
  redis.pcall('ZADD', KEYS[3], 'NX', t[1] .. '.' .. string.sub('00000' .. t[2], -6), ARGV[6])
  redis.pcall('PEXPIRE', KEYS[3], ARGV[7])
end
` + acquireBusy)

// acquireBareScript is acquireScript without fences, for requests with
// NoFence: the lock is "TOKEN\n0\n\nOWNER" (fence 0, no SINCE), taken by one
// SET NX. Same arguments (ARGV[4] and ARGV[5] unused) and reply.
var acquireBareScript = newScript(`
if redis.call('SET', KEYS[1], ARGV[1] .. '\n0\n\n' .. ARGV[3], 'NX', 'PX', ARGV[2]) then
  return '0'
end
` + acquireBusy)

// acquireBusy ends the acquire scripts when SET NX found KEYS[1] taken: by
// ARGV[1] itself (a retried request: reset the TTL, same fence), by another
// token, or by other data.
const acquireBusy = `
local v = redis.pcall('GET', KEYS[1])
if type(v) == 'table' then return '!1 ' .. redis.call('TYPE', KEYS[1]).ok end
local i = string.find(v, '\n', 1, true)
local j = i and string.find(v, '\n', i + 1, true)
if not j then return '!1 string' end
if string.sub(v, 1, i - 1) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return string.sub(v, i + 1, j - 1)
end
return redis.call('PTTL', KEYS[1])
`

// holderOf, prepended to the scripts below, reads the lock KEYS[1]: it
// returns the whole value and the end of its token, nil if the key is
// free, or false if it holds other data.
const holderOf = `
local function holder()
  local v = redis.pcall('GET', KEYS[1])
  if type(v) == 'table' then return false end
  if not v then return nil end
  local i = string.find(v, '\n', 1, true)
  if not i or not string.find(v, '\n', i + 1, true) then return false end
  return v, i
end
`

// refreshScript resets KEYS[1]'s TTL to ARGV[2] ms if ARGV[1] holds it.
// Reply: 1 done; 0 not held by the token; -1 the key holds other data.
var refreshScript = newScript(holderOf + `
local v, i = holder()
if v == false then return -1 end
if not v or string.sub(v, 1, i - 1) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// releaseScript deletes KEYS[1] if ARGV[1] holds it and wakes waiters as
// wakeScript does. Reply as refreshScript's.
var releaseScript = newScript(holderOf + wakeNext + `
local v, i = holder()
if v == false then return -1 end
if not v or string.sub(v, 1, i - 1) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
wake()
return 1
`)

// wakeScript passes the turn on: if KEYS[1] is free, it wakes waiters as
// a release does. A waiter that was woken after it stopped waiting runs
// it, so that the release that woke it is not lost. ARGV[2] as
// releaseScript's. Reply: 1 woken, 0 the key is held.
var wakeScript = newScript(wakeNext + `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
wake()
return 1
`)

// wakeNext, prepended to the scripts above, wakes the waiters of KEYS[1],
// with command ARGV[2] (PUBLISH, or SPUBLISH on Cluster): the first waiter
// of the queue KEYS[2] still listening on its own channel,
// KEYS[1]..":w:"..TAG (see waiterChannel), or else every subscriber of
// KEYS[1]..":released"..ARGV[3] (see releasedChannel). A queued waiter that gave up or
// died no longer listens, so the publish reaches nobody and the next is
// tried.
const wakeNext = `
local function wake()
  while true do
    local w = redis.pcall('ZPOPMIN', KEYS[2])
    if type(w) ~= 'table' or not w[1] then break end
    if redis.call(ARGV[2], KEYS[1] .. ':w:' .. w[1], '') > 0 then return end
  end
  redis.call(ARGV[2], KEYS[1] .. ':released' .. (ARGV[3] or ''), '')
end
`

// inspectScript reports KEYS[1]'s holder. Reply: {1, owner, fence, pttl,
// since}; {0} free; {-1, type} the key holds other data.
var inspectScript = newScript(holderOf + `
local v, i = holder()
if v == false then return {-1, redis.call('TYPE', KEYS[1]).ok} end
if not v then return {0} end
local j = string.find(v, '\n', i + 1, true)
local k = string.find(v, '\n', j + 1, true)
if not k then k = j end
return {1, string.sub(v, k + 1), string.sub(v, i + 1, j - 1), redis.call('PTTL', KEYS[1]), string.sub(v, j + 1, k - 1)}
`)

// raiseFenceScript, if ARGV[1] holds KEYS[1], records ARGV[2] as its fence
// and raises the fence key KEYS[2] to at least ARGV[2], keeping it for
// ARGV[3] ms. Reply: 1 done; 0 not held; -1 / -2 as acquireScript's.
var raiseFenceScript = newScript(holderOf + `
local v, i = holder()
if v == false then return -1 end
if not v or string.sub(v, 1, i - 1) ~= ARGV[1] then return 0 end
local last = redis.pcall('GET', KEYS[2])
if type(last) == 'table' then return -2 end
local f = tonumber(ARGV[2])
if not tonumber(last) or tonumber(last) < f then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
else
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
local j = string.find(v, '\n', i + 1, true)
redis.call('SET', KEYS[1], string.sub(v, 1, i) .. ARGV[2] .. string.sub(v, j), 'KEEPTTL')
return 1
`)

// checkScript runs at Open: it reads a key under the prefix, so that a
// wrong password or a user without permission to run scripts or to touch
// the prefix fails at once, not at the first lock.
var checkScript = newScript(`
local t = redis.call('TYPE', KEYS[1])
return 1
`)

// luaScript is a script with its SHA and source boxed once, for eval.
type luaScript struct {
	*redis.Script
	sha, src any
}

func newScript(src string) luaScript {
	s := redis.NewScript(src)
	return luaScript{s, s.Hash(), src}
}

// doer is a client or a pipeline.
type doer interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// eval runs s by EVALSHA, or by EVAL if the server has not cached it yet.
// args is the whole command with two free slots in front, for the command
// and the script, and then the number of keys, the keys and the
// arguments: one slice per call, where go-redis's Script.Run needs three
// and boxes every key again.
func eval(ctx context.Context, c doer, s luaScript, args []any) *redis.Cmd {
	args[0], args[1] = "evalsha", s.sha
	cmd := c.Do(ctx, args...)
	if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		args[0], args[1] = "eval", s.src
		cmd = c.Do(ctx, args...)
	}
	return cmd
}

// boxCache keeps the interface value of the last argument of one kind: a
// driver mostly repeats the same TTL and owner, and boxing them allocates.
type boxCache[T comparable] struct{ last atomic.Pointer[boxed[T]] }

type boxed[T comparable] struct {
	v   T
	box any
}

func (c *boxCache[T]) box(v T) any {
	if b := c.last.Load(); b != nil && b.v == v {
		return b.box
	}
	b := &boxed[T]{v, v}
	c.last.Store(b)
	return b.box
}
