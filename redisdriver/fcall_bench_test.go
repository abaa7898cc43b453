package redisdriver

import (
	"context"
	"crypto/rand"
	"strconv"
	"strings"
	"testing"

	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// BenchmarkServerPair compares ways of running the uncontended pair (an
// acquire of a free key and its release) on the server: the scripts by
// EVALSHA, as the driver does; the same Lua bodies as a Redis Function
// library by FCALL; a release without the wake-up of waiters (what a
// "waiters present" mark would save when nobody waits); the fenced
// acquire reduced to its four commands (what tuning its Lua could save at
// most); the bare SET NX of
// a lease without fence; and the minimal lock (SET NX, compare-and-delete
// script). Besides ns/op it reports server-µs/op, the server's own time
// per pair (INFO commandstats), which is what the variants change: the
// round trips are the same for all. Sub-benchmarks run in turn within one
// -count, so a noisy minute falls on all of them.
func BenchmarkServerPair(b *testing.B) {
	s := redistest.Shared(b)
	c := s.Client(b)
	ctx := context.Background()
	d := newLocker(c, nil, false)
	defer d.Close()
	if err := c.FunctionLoad(ctx, "#!lua name=dlockbench\n"+
		"redis.register_function('dlock_acquire', function(KEYS, ARGV)\n"+acquireScript.src.(string)+"\nend)\n"+
		"redis.register_function('dlock_release', function(KEYS, ARGV)\n"+releaseScript.src.(string)+"\nend)\n").Err(); err != nil &&
		!strings.Contains(err.Error(), "already exists") {
		b.Fatal(err)
	}
	releaseNoWake := newScript(holderOf + `
local v, i = holder()
if v == false then return -1 end
if not v or string.sub(v, 1, i - 1) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)
	// acquireCore is the fenced acquire reduced to its commands (TIME, GET
	// fence, SET NX, SET fence), without the checks for other data and
	// floors: a bound on what tuning the script's Lua could save.
	acquireCore := newScript(`
local t = redis.call('TIME')
local f = t[1] .. string.sub('00000' .. t[2], -6)
local last = redis.call('GET', KEYS[2])
if last and (#last > #f or #last == #f and last >= f) then f = string.format('%.0f', tonumber(last) + 1) end
if redis.call('SET', KEYS[1], ARGV[1] .. '\n' .. f .. '\n' .. t[1] .. ' ' .. t[2] .. '\n' .. ARGV[3], 'NX', 'PX', ARGV[2]) then
  redis.call('SET', KEYS[2], f, 'PX', ARGV[4])
  return f
end
return redis.call('PTTL', KEYS[1])
`)
	minimalRelease := newScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

	key := "bench/server/" + rand.Text()
	token := rand.Text()
	lk, fk, qk, ak := d.queueKeys(key)
	acquireArgs := func() []any { return []any{nil, nil, 2, lk, fk, token, int64(10000), "bench", int64(600000), ""} }
	releaseArgs := func() []any {
		return []any{nil, nil, 4, lk, fk, qk, ak, token, d.publish, d.notify.scope, waiterTag(token)}
	}
	fcall := func(name string, args []any) *redis.Cmd {
		args[0], args[1] = "fcall", name
		return c.Do(ctx, args...)
	}
	check := func(b *testing.B, what string, err error, ok bool) {
		if err != nil || !ok {
			b.Fatalf("%s: %v", what, err)
		}
	}
	setNX := func(b *testing.B) {
		ok, err := c.SetNX(ctx, lk, token+"\n0\n\nbench", 10e9).Result()
		check(b, "SET NX", err, ok)
	}
	for _, v := range []struct {
		name string
		pair func(b *testing.B)
	}{
		{"EVALSHA", func(b *testing.B) {
			v, err := eval(ctx, c, acquireScript, acquireArgs()).Text()
			check(b, "acquire", err, v != "")
			n, err := eval(ctx, c, releaseScript, releaseArgs()).Int64()
			check(b, "release", err, n == 1)
		}},
		{"FCALL", func(b *testing.B) {
			v, err := fcall("dlock_acquire", acquireArgs()).Text()
			check(b, "acquire", err, v != "")
			n, err := fcall("dlock_release", releaseArgs()).Int64()
			check(b, "release", err, n == 1)
		}},
		{"EVALSHA_ReleaseNoWake", func(b *testing.B) {
			v, err := eval(ctx, c, acquireScript, acquireArgs()).Text()
			check(b, "acquire", err, v != "")
			n, err := eval(ctx, c, releaseNoWake, releaseArgs()).Int64()
			check(b, "release", err, n == 1)
		}},
		{"EVALSHA_AcquireCore_ReleaseNoWake", func(b *testing.B) {
			v, err := eval(ctx, c, acquireCore, acquireArgs()).Text()
			check(b, "acquire", err, v != "")
			n, err := eval(ctx, c, releaseNoWake, releaseArgs()).Int64()
			check(b, "release", err, n == 1)
		}},
		{"Bare", func(b *testing.B) { // a lease without fence: SET NX, the release script
			setNX(b)
			n, err := eval(ctx, c, releaseScript, releaseArgs()).Int64()
			check(b, "release", err, n == 1)
		}},
		{"Bare_ReleaseNoWake", func(b *testing.B) {
			setNX(b)
			n, err := eval(ctx, c, releaseNoWake, releaseArgs()).Int64()
			check(b, "release", err, n == 1)
		}},
		{"Minimal", func(b *testing.B) {
			setNX(b)
			n, err := minimalRelease.Run(ctx, c, []string{lk}, token+"\n0\n\nbench").Int64()
			check(b, "release", err, n == 1)
		}},
	} {
		b.Run(v.name, func(b *testing.B) {
			v.pair(b) // loads the scripts
			if err := c.ConfigResetStat(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				v.pair(b)
				n++
			}
			b.StopTimer()
			b.ReportMetric(commandUsec(b, c)/float64(n), "server-µs/op")
		})
	}
}

// commandUsec returns the server's time in commands since the last
// CONFIG RESETSTAT, in µs, from INFO commandstats (without CONFIG and
// INFO themselves).
func commandUsec(b *testing.B, c *redis.Client) float64 {
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") || name == "cmdstat_info" || strings.HasPrefix(name, "cmdstat_config") {
			continue
		}
		for _, kv := range strings.Split(stats, ",") {
			if v, ok := strings.CutPrefix(kv, "usec="); ok {
				u, _ := strconv.ParseFloat(v, 64)
				total += u
			}
		}
	}
	return total
}
