package redisdriver

import "github.com/redis/go-redis/v9"

// The Lua scripts. Each runs atomically on the node that owns the lock key;
// every key a script touches shares the lock key's hash tag, so they work on
// Redis Cluster. A lock is a hash with the fields token, owner and fence,
// with a PEXPIRE; the fence key is a string holding the last fence granted.
//
// A key of another type where a lock should be (someone else's data), or a
// hash without a token field, is reported as a normal reply, {-1, type} or
// -1, never overwritten: redis.pcall turns the WRONGTYPE error into a value
// the script can test.
//
// Fences are microseconds since the epoch, below 2^53 until the year 2255,
// so Lua's doubles hold them exactly; string.format('%.0f') prints them
// without an exponent.

// acquireScript takes KEYS[1] (lock) for ARGV[1] (token) for ARGV[2] ms with
// owner ARGV[3]; KEYS[2] is the fence key, kept for ARGV[4] ms.
// Reply: {1, fence} acquired (or already held by the token: same fence,
// TTL reset); {0, pttl} held by another token; {-1, type} the lock key holds
// other data; {-2, type} the fence key holds other data.
var acquireScript = redis.NewScript(`
local h = redis.pcall('HMGET', KEYS[1], 'token', 'fence')
if h.err then return {-1, redis.call('TYPE', KEYS[1]).ok} end
if h[1] then
  if h[1] == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, h[2]}
  end
  return {0, redis.call('PTTL', KEYS[1])}
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1, 'hash'} end
local last = redis.pcall('GET', KEYS[2])
if type(last) == 'table' and last.err then return {-2, redis.call('TYPE', KEYS[2]).ok} end
local t = redis.call('TIME')
local f = tonumber(t[1]) * 1000000 + tonumber(t[2])
if last then
  local l = tonumber(last)
  if l and l >= f then f = l + 1 end
end
local fs = string.format('%.0f', f)
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'owner', ARGV[3], 'fence', fs)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], fs, 'PX', ARGV[4])
return {1, fs}
`)

// refreshScript resets KEYS[1]'s TTL to ARGV[2] ms if ARGV[1] holds it.
// Reply: 1 done; 0 not held by the token; -1 the key holds other data.
var refreshScript = redis.NewScript(`
local t = redis.pcall('HGET', KEYS[1], 'token')
if type(t) == 'table' and t.err then return -1 end
if t == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not t and redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
return 0
`)

// releaseScript deletes KEYS[1] if ARGV[1] holds it and publishes an empty
// message on channel ARGV[3] with command ARGV[2] (PUBLISH, or SPUBLISH on
// Cluster). Reply as refreshScript's.
var releaseScript = redis.NewScript(`
local t = redis.pcall('HGET', KEYS[1], 'token')
if type(t) == 'table' and t.err then return -1 end
if t ~= ARGV[1] then
  if not t and redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
  return 0
end
redis.call('DEL', KEYS[1])
redis.call(ARGV[2], ARGV[3], '')
return 1
`)

// inspectScript reports KEYS[1]'s holder. Reply: {1, owner, fence, pttl};
// {0} free; {-1, type} the key holds other data.
var inspectScript = redis.NewScript(`
local h = redis.pcall('HMGET', KEYS[1], 'token', 'owner', 'fence')
if h.err then return {-1, redis.call('TYPE', KEYS[1]).ok} end
if not h[1] then
  if redis.call('EXISTS', KEYS[1]) == 1 then return {-1, 'hash'} end
  return {0}
end
return {1, h[2] or '', h[3] or '0', redis.call('PTTL', KEYS[1])}
`)

// raiseFenceScript, if ARGV[1] holds KEYS[1], records ARGV[2] as its fence
// and raises the fence key KEYS[2] to at least ARGV[2], keeping it for
// ARGV[3] ms. Reply: 1 done; 0 not held; -1 / -2 as acquireScript's.
var raiseFenceScript = redis.NewScript(`
local t = redis.pcall('HGET', KEYS[1], 'token')
if type(t) == 'table' and t.err then return -1 end
if t ~= ARGV[1] then
  if not t and redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
  return 0
end
local last = redis.pcall('GET', KEYS[2])
if type(last) == 'table' and last.err then return -2 end
local f = tonumber(ARGV[2])
if not last or not tonumber(last) or tonumber(last) < f then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
else
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
redis.call('HSET', KEYS[1], 'fence', ARGV[2])
return 1
`)

// checkScript runs at Open: it reads a key under the prefix, so that a
// wrong password or a user without permission to run scripts or to touch
// the prefix fails at once, not at the first lock.
var checkScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])
return 1
`)
