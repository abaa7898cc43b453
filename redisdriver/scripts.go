package redisdriver

// The Lua scripts. Each runs atomically on the node that owns the lock key;
// every key a script touches shares the lock key's hash tag, so they work on
// Redis Cluster.
//
// A lock is a string "TOKEN\nFENCE\nSINCE\nOWNER" with a PX expiry, where
// SINCE is the server's TIME at the grant ("SECONDS MICROSECONDS"), set with SET NX
// so that taking a free key is one command; the fence key is a string
// holding the last fence granted. The common paths stay short because the
// server's time per script, not the round trip, is what a lock costs beyond
// a bare SET NX: acquiring a free key is TIME, GET (fence), SET NX, SET
// (fence); refreshing is GET, PEXPIRE, GET, PTTL and PEXPIRE (fence); releasing
// with no waiter queued is EXISTS (the queue), GET, DEL, PUBLISH. ZADD NX
// (the queue) and HSET (its deadlines) are Redis 6.2 commands or older.
//
// Direct handoff: a waiter queued with an attempt number (see
// acquireScript) has its attempt stored next to its queue entry, and a
// release (or a waiter passing its turn on) grants the key to the first
// queued waiter still listening, as that attempt would have been granted
// (grantFn: the same fence rules), and tells it so in the PUBLISH to its
// own channel: "grant ATTEMPT FENCE". A waiter with no subscriber left on
// its channel (PUBSUB NUMSUB, asked before the grant) is gone: the next
// is tried, all within the same script (see wakeNext).
//
// A key of another type where a lock should be, or a string that is not in
// the lock format (someone else's data), is reported as a normal reply,
// {-1, type} or -1, never overwritten: redis.pcall turns the WRONGTYPE
// error into a value the script can test. Any other error of a write
// (READONLY on a demoted master, NOREPLICAS under min-replicas-to-write,
// OOM under maxmemory) is the server refusing the script's first write,
// before anything changed: the scripts return it as the error reply it is,
// so that the driver reports it as ErrUnavailable and the root retries.
//
// Fences are microseconds since the epoch, below 2^53 until the year 2255,
// so Lua's doubles hold them exactly; string.format('%.0f') prints them
// without an exponent. A fence never reaches 2^53: the driver refuses
// floors from 2^53 on before any I/O, and a script refuses to grant one.
// A fence key holds a fence: at most 16 digits, below 2^53. Anything
// else there is someone else's data, refused like a key of another type.

// acquireScript takes KEYS[1] (lock) for ARGV[1] (token) for ARGV[2] ms with
// owner ARGV[3]; KEYS[2] is the fence key, kept for ARGV[4] ms (at least
// ARGV[2]: see fenceKeep). The fence is chosen by grantFn, with ARGV[5]
// (the request's fence floor, if not empty) as its floor.
// A waiting caller also passes KEYS[3], the key's queue of waiters, KEYS[4],
// the queued waiters' attempts, its waiter tag ARGV[6], ARGV[7] ms, the
// time within which it attempts again, and ARGV[8], its attempt number or
// "" (see driver.Queued.Attempt; "" also for a request with a floor): a
// busy attempt queues the tag first come, first served: scored by its
// arrival (the script's TIME in µs), kept by its later attempts (ZADD NX).
// Its deadline (now + ARGV[7], in ms since the epoch, or the deadline it
// had if later) is stored under its tag in the hash KEYS[4], followed,
// with an attempt number, by its attempt:
// "DEADLINE\nATTEMPT\nTTL\nKEEP\nTOKEN\nOWNER", replacing its earlier
// entry, so that a release can grant the key on that attempt (see
// wakeNext); a grant removes both. Queue and hash are kept for at least
// ARGV[7] (never shortened). A waiter that gave up stays queued only until
// its deadline: each busy attempt first looks at up to pruneLimit entries
// and removes those whose deadline passed (and their hash entries), from
// a window that sweeps the queue from its head (its rank in the hash,
// field "\nc"), so that dead entries go at least as
// fast as they come, and no script loops over the whole queue. Someone
// else's data at KEYS[3] is left alone (the waiter is then not queued);
// any other error reading it (NOPERM for a user without ZRANGE) is
// the reply, as no lock was granted, rather than a queue that is silently
// never pruned. A refused HSET (someone else's data at KEYS[4]) or ZADD
// leaves the waiter unqueued (it is then woken with every subscriber, not
// granted): the reply stays "busy", with the holder's TTL. An attempt
// that finds the key held by its own token (granted on an earlier
// attempt, the grant's message still on its way) is not queued: it
// returns the key, and a queued entry would make the release of that
// lease grant the key straight back to the token releasing it.
// Reply: the fence, a string of digits, when acquired (or already held by
// the token: same fence, TTL reset); the holder's PTTL, an integer, when
// held by another token; "!1 TYPE" when the lock key holds other data, "!2
// TYPE" when the fence key does; "!3" when the fence would reach 2^53.
// (Plain values, not a table, which would cost the server more to build
// than the rest of a grant but a SET.)
var acquireScript = newScript(isFence + grantFn + `
local t = redis.call('TIME')
local f = grant(t, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
if f then
  if KEYS[3] and type(f) == 'string' and string.byte(f) ~= 33 then
    redis.pcall('ZREM', KEYS[3], ARGV[6])
    redis.pcall('HDEL', KEYS[4], ARGV[6])
  end
  return f
end
local mine = KEYS[3] and redis.pcall('GET', KEYS[1])
if mine then mine = type(mine) == 'string' and string.sub(mine, 1, #ARGV[1] + 1) == ARGV[1] .. '\n' end
if KEYS[3] and not mine then
` + queueFns + `
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local c = redis.pcall('HGET', KEYS[4], '\nc')
  c = type(c) == 'string' and tonumber(c) or 0
  local win = redis.pcall('ZRANGE', KEYS[3], c, c + ` + pruneLimit + ` - 1)
  if win.err then
    if string.sub(win.err, 1, 10) ~= 'WRONGTYPE ' then return win end
  else
    local dead = {}
    for _, m in ipairs(win) do
      if deadline(redis.pcall('HGET', KEYS[4], m)) < now then dead[#dead + 1] = m end
    end
    if dead[1] then
      redis.call('ZREM', KEYS[3], unpack(dead))
      redis.pcall('HDEL', KEYS[4], unpack(dead))
    end
    local nc = #win == ` + pruneLimit + ` and c + #win - #dead or 0
    if nc == 0 and c ~= 0 then
      redis.pcall('HDEL', KEYS[4], '\nc')
    elseif nc ~= 0 then
      redis.pcall('HSET', KEYS[4], '\nc', nc)
    end
    local dl = math.max(now + tonumber(ARGV[7]), deadline(redis.pcall('HGET', KEYS[4], ARGV[6])))
    local a = string.format('%.0f', dl)
    if ARGV[8] ~= '' then
      a = a .. '\n' .. ARGV[8] .. '\n' .. ARGV[2] .. '\n' .. ARGV[4] .. '\n' .. ARGV[1] .. '\n' .. ARGV[3]
    end
    if type(redis.pcall('HSET', KEYS[4], ARGV[6], a)) == 'number' then
      if type(redis.pcall('ZADD', KEYS[3], 'NX', t[1] .. string.sub('00000' .. t[2], -6), ARGV[6])) == 'number' then
        keep(KEYS[3])
        keep(KEYS[4])
      else
        redis.call('HDEL', KEYS[4], ARGV[6])
      end
    end
  end
end
` + acquireBusy)

// grantFn, prepended to the scripts that grant, defines grant(t, token,
// ttl, owner, keep, floor), shared by an acquire and a handoff so that
// both grant by the same rules: it takes the lock KEYS[1] for token for
// ttl ms with owner, SINCE t (the script's TIME), if it is free, and keeps
// the fence key KEYS[2] for keep ms. The fence is the largest of t in
// microseconds, one more than the last fence, and floor (if not empty)
// capped at t plus the TTL: the floor is never trusted alone, so no fence
// runs more than a TTL ahead of the clock of the server that granted it,
// and a server that restarted empty and stayed out longer than the TTL
// grants above every fence it granted before (see the package docs,
// Fences). It returns the fence (a string of digits) when granted, nil when
// the lock is taken, and otherwise the acquire's reply: an error (reading
// the fence key failed), "!2 TYPE" or "!3" (see acquireScript).
//
// The fence key is read before the lock is tried and written only with a
// grant, so that someone else's data there is never overwritten. The new
// fence needs only its bound tested: TIME's digits and string.format's
// '%.0f' of a positive number are digits without a leading zero.
const grantFn = `
local function grant(t, token, ttl, owner, keep, floor)
  local f = t[1] .. string.sub('00000' .. t[2], -6)
  if floor ~= '' then
    local now = tonumber(f)
    f = string.format('%.0f', math.max(now, math.min(tonumber(floor), now + ttl * 1000)))
  end
  local last = redis.pcall('GET', KEYS[2])
  if type(last) == 'table' then
    if string.sub(last.err, 1, 10) ~= 'WRONGTYPE ' then return last end
    return '!2 ' .. redis.call('TYPE', KEYS[2]).ok
  end
  if last then
    if not isFence(last) then return '!2 string that is not a fence' end
    if #last > #f or #last == #f and last >= f then f = string.format('%.0f', tonumber(last) + 1) end
  end
  if #f > 16 or #f == 16 and f >= '9007199254740992' then return '!3' end
  if not redis.call('SET', KEYS[1], token .. '\n' .. f .. '\n' .. t[1] .. ' ' .. t[2] .. '\n' .. owner, 'NX', 'PX', ttl) then
    return nil
  end
  redis.call('SET', KEYS[2], f, 'PX', keep)
  return f
end
`

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

// refreshScript resets KEYS[1]'s TTL to ARGV[2] ms if ARGV[1] holds it,
// and keeps its fence key KEYS[2], at least at the lock's fence, for at
// least as long as the lock: a lock held longer than the fence expiry must
// not lose the last fence, or the next grant could go below it (with a
// floor from a client whose clock runs ahead). The fence key is re-armed,
// for ARGV[3] ms, only when less than ARGV[2] ms is left on it: a renewal
// otherwise writes nothing to it. It is never shortened (a refresh to a
// shorter TTL must not drop a fence that a grant kept for its TTL).
// Someone else's data at KEYS[2] is left alone. Reply: 1 done; 0 not held by the token; -1 the key holds other
// data.
var refreshScript = newScript(holderOf + isFence + `
local v, i = holder()
if v == false then return -1 end
if not v or string.sub(v, 1, i - 1) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local f = string.sub(v, i + 1, string.find(v, '\n', i + 1, true) - 1)
if f ~= '0' then
  local last = redis.pcall('GET', KEYS[2])
  if not last or isFence(last) and (#last < #f or #last == #f and last < f) then
    redis.call('SET', KEYS[2], f, 'PX', ARGV[3])
  elseif isFence(last) and redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[2], ARGV[3])
  end
end
return 1
`)

// isFence, prepended to scripts, tells a fence (see above) from other data.
const isFence = `
local function isFence(s)
  if type(s) ~= 'string' then return false end
  local n = #s
  return n > 0 and (n < 16 or n == 16 and s < '9007199254740992') and not string.find(s, '%D') and (n == 1 or string.byte(s) ~= 48)
end
`

// releaseScript deletes KEYS[1] if ARGV[1] holds it and wakes waiters as
// wakeScript does; KEYS[2], KEYS[3] and KEYS[4] are the lock's fence key,
// queue and queued attempts, as acquireScript's. ARGV[4], if given, is
// the waiter tag of ARGV[1], whose queue entry goes first, whether the
// token holds the key or not: a holder that took the key without the
// queue's help (a bare SET NX, an attempt that does not queue) still has
// the entry of its earlier busy attempt, and the release would otherwise
// hand the key straight back to the token releasing it, still subscribed
// for a moment; and a waiter that gave up unsure whether it still
// listens (its UNSUBSCRIBE never confirmed) releases its token, after
// which no release grants it anything. Reply as refreshScript's,
// and 2 for done when the release reached nobody although waiters were
// queued (see wakeNext).
//
// With no queue (no waiter queued: the common release), the script
// publishes the release to every subscriber and returns before it defines
// the functions of a handoff: what a script costs the server beyond its
// commands grows with the Lua it runs and the closures it makes, and the
// commands themselves cost well under a microsecond each (INFO
// commandstats: EXISTS 0.14-0.22 µs, PUBLISH 0.20-0.31, GET 0.23-0.28,
// DEL 0.28-0.47), so a release of an uncontended key pays for EXISTS,
// GET, DEL and PUBLISH alone. Every subscriber is still woken at every
// release, as driver.Notifier requires.
var releaseScript = newScript(holderOf + `
local queued = redis.call('EXISTS', KEYS[3]) == 1
if queued and ARGV[4] and redis.pcall('ZREM', KEYS[3], ARGV[4]) == 1 then redis.pcall('HDEL', KEYS[4], ARGV[4]) end
local v, i = holder()
if v == false then return -1 end
if not v or string.sub(v, 1, i - 1) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if not queued then
  redis.call(ARGV[2], KEYS[1] .. ':released' .. (ARGV[3] or ''), '')
  return 1
end
` + isFence + grantFn + queueFns + wakeNext + `
if wake() then return 2 end
return 1
`)

// wakeScript passes the turn on: if KEYS[1] is free, it wakes waiters as
// a release does. A waiter that was woken after it stopped waiting runs
// it, so that the release that woke it is not lost. KEYS and ARGV[2] and
// ARGV[3] as releaseScript's. Reply: 1 woken, 0 the key is held.
var wakeScript = newScript(isFence + grantFn + queueFns + wakeNext + `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
wake()
return 1
`)

// wakeNext, prepended to the scripts above (after grantFn), wakes the
// waiters of the free lock KEYS[1], with command ARGV[2] (PUBLISH, or
// SPUBLISH on Cluster): the first waiter of the queue KEYS[3] still
// listening on its own channel, KEYS[1]..":w:"..TAG (see waiterChannel),
// or else every subscriber of KEYS[1]..":released"..ARGV[3] (see
// releasedChannel). A queued waiter that gave up or died no longer
// listens, and the next is tried.
//
// "Still listening" is asked of the server before anything is granted or
// published: PUBSUB NUMSUB (SHARDNUMSUB on Cluster) counts the exact
// subscribers of the waiter's channel on this server, the master that
// runs the script. A PUBLISH's own count cannot tell: it counts pattern
// subscribers too (a monitoring client on PSUBSCRIBE * would make every
// gone waiter look present), and a grant undone after a PUBLISH that
// counted nobody still reaches the replicas, to which the message is
// propagated, and a waiter subscribed on one (after a failover) would
// take it for a lease. So a grant is published only when it stands, and a
// grant message always means the key is the waiter's. A user that may not
// run PUBSUB gets the fallback: every subscriber woken, nobody granted.
//
// A waiter whose attempt is stored in KEYS[4] is handed the key: it is
// granted as that attempt would have been (grantFn, with the attempt's
// token, TTL, fence keep and owner, SINCE now), and the publish to its
// channel says "grant ATTEMPT FENCE", safe by the argument in
// driver.Handoff (the grant's TTL runs from now). A grant
// refused (someone else's data at the fence key) falls back to a plain
// wake, whose attempt then reports the problem. A waiter queued without an
// attempt is only woken (a publish of "").
//
// wake returns true when it reached nobody although a queued waiter whose
// deadline has not passed was found not listening: on Cluster, a release
// that ran on a slot's importing node (after ASK, its keys migrated
// there) while the waiters listen on the slot's owner, which the driver
// then wakes (see locker.Release).
//
// It tries at most pruneLimit queued waiters, first come first (removing
// those whose deadline in KEYS[4] passed or is missing, and those not
// listening), then falls back to waking every subscriber: a release
// costs bounded work however many waiters gave up.
const wakeNext = `
local function handoff(t, a)
  local i = string.find(a, '\n', 1, true)
  local j = i and string.find(a, '\n', i + 1, true)
  local k = j and string.find(a, '\n', j + 1, true)
  local l = k and string.find(a, '\n', k + 1, true)
  if not l then return nil end
  local f = grant(t, string.sub(a, k + 1, l - 1), string.sub(a, i + 1, j - 1), string.sub(a, l + 1), string.sub(a, j + 1, k - 1), '')
  if type(f) ~= 'string' or string.byte(f) == 33 then return nil end
  return 'grant ' .. string.sub(a, 1, i - 1) .. ' ' .. f
end
local function listening(ch)
  local n = redis.pcall('PUBSUB', ARGV[2] == 'SPUBLISH' and 'SHARDNUMSUB' or 'NUMSUB', ch)
  if type(n) ~= 'table' or n.err then return nil end
  return n[2] > 0
end
local function wake()
  local t, now, missed
  for _ = 1, ` + pruneLimit + ` do
    local w = redis.pcall('ZPOPMIN', KEYS[3])
    if type(w) ~= 'table' or not w[1] then break end
    if not t then
      t = redis.call('TIME')
      now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    local a = redis.pcall('HGET', KEYS[4], w[1])
    if type(a) == 'string' then redis.call('HDEL', KEYS[4], w[1]) end
    if deadline(a) >= now then
      local ch = KEYS[1] .. ':w:' .. w[1]
      local on = listening(ch)
      if on == nil then break end
      if on then
        local i = string.find(a, '\n', 1, true)
        redis.call(ARGV[2], ch, i and handoff(t, string.sub(a, i + 1)) or '')
        return false
      end
      missed = true
    end
  end
  return redis.call(ARGV[2], KEYS[1] .. ':released' .. (ARGV[3] or ''), '') == 0 and missed
end
`

// queueFns, put before the code of a script that reads the waiter queue
// (in acquireScript, inside the block that queues: a grant or a request
// that does not wait never makes its closures), defines
// deadline(a), the deadline (ms since the epoch) of a queued waiter's entry
// a in the attempts hash ("DEADLINE" or "DEADLINE\nATTEMPT\n..."), 0 if
// there is none (HGET's nil or error: the entry is dead), and keep(k),
// which makes k expire in no less than ARGV[7] ms and never sooner than it
// would (a waiter with a short Wait must not cut the queue of one with a
// long Wait).
const queueFns = `
local function deadline(a)
  return type(a) == 'string' and tonumber(string.match(a, '^%d+')) or 0
end
local function keep(k)
  if redis.call('PTTL', k) < tonumber(ARGV[7]) then redis.call('PEXPIRE', k, ARGV[7]) end
end
`

// pruneLimit bounds the queue entries one script removes or tries.
const pruneLimit = "8"

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
var raiseFenceScript = newScript(holderOf + isFence + `
local v, i = holder()
if v == false then return -1 end
if not v or string.sub(v, 1, i - 1) ~= ARGV[1] then return 0 end
local last = redis.pcall('GET', KEYS[2])
if type(last) == 'table' or last and not isFence(last) then return -2 end
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
// the prefix fails at once, not at the first lock. On Redis 7 and later
// it also asks the ACL (redis.acl_check_cmd) whether the user may run
// each command the scripts run on the key KEYS[1], and WAIT if ARGV[1] is
// "1": a script's commands are checked only when they run, so without
// this a user lacking TIME would pass Open and fail every acquire, and
// one lacking ZRANGEBYSCORE would never prune the waiter queue (and one
// lacking PUBSUB NUMSUB would never be handed a key). EVAL and
// EVALSHA are asked too: while the server has the scripts cached, EVALSHA
// alone works, until a restart or SCRIPT FLUSH makes EVAL necessary.
// Last, it tries a write that changes nothing (ZREM of a member no one
// adds; on a lock, a string, it is refused as WRONGTYPE), so that a
// read-only replica, where every lock write is refused, is found at Open.
// Reply: 1, the name of the first command refused, or "!READONLY".
var checkScript = newScript(`
local t = redis.call('TYPE', KEYS[1])
if redis.acl_check_cmd then
  local k = KEYS[1]
  local cmds = {{'TIME'}, {'GET', k}, {'SET', k, 'v'}, {'DEL', k}, {'EXISTS', k}, {'PTTL', k},
    {'PEXPIRE', k, '1'}, {'ZADD', k, '1', 'm'}, {'ZPOPMIN', k}, {'ZREM', k, 'm'},
    {'ZRANGEBYSCORE', k, '0', '1'}, {'EVAL', 'return 1', '1', k}, {'EVALSHA', string.rep('0', 40), '1', k},
    {'TYPE', k}, {'ZRANGE', k, '0', '0'}, {'ZCOUNT', k, '0', '1'}, {'ZSCORE', k, 'm'},
    {'HGET', k, 'f'}, {'HSET', k, 'f', 'v'}, {'HDEL', k, 'f'}, {'UNLINK', k},
    {'PUBSUB', 'NUMSUB', k}, {'PUBSUB', 'SHARDNUMSUB', k}}
  if ARGV[1] == '1' then cmds[#cmds + 1] = {'WAIT', '0', '0'} end
  for _, c in ipairs(cmds) do
    if not redis.acl_check_cmd(unpack(c)) then return c[1] == 'PUBSUB' and c[1] .. '|' .. c[2] or c[1] end
  end
end
local w = redis.pcall('ZREM', KEYS[1], 'dlock open check')
if type(w) == 'table' and w.err and string.sub(w.err, 1, 9) == 'READONLY ' then return '!READONLY' end
return 1
`)
