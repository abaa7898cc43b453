package redlock_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redlock"
)

// TestRedisCommandsPerPair counts what an uncontended acquire and release
// cost each node, by the servers' own counters: one command each. Without
// fencing the acquire is a bare SET NX PX, no script (the cheapest command
// that takes a key, as redsync's), and the release is one script; with
// fencing the acquire is one script, which grants the proposed fence, and
// no write-back round follows. A quorum call returns at its majority, so
// the driver is closed (it waits for the calls still running) before the
// counters are read.
func TestRedisCommandsPerPair(t *testing.T) {
	nodes := startRedis(t, 3)
	const pairs = 20
	for _, fencing := range []bool{false, true} {
		t.Run("fencing="+strconv.FormatBool(fencing), func(t *testing.T) {
			ctx := t.Context()
			opts := &redlock.Options{DisableFencing: !fencing}
			pair := func(d driver.Locker, key string) {
				t.Helper()
				r := driver.Request{Key: key, Token: rand(), TTL: time.Minute}
				if res, err := d.Acquire(ctx, r); err != nil || !res.Acquired {
					t.Fatalf("Acquire %q = %+v, %v", key, res, err)
				}
				if err := d.Release(ctx, r.Key, r.Token); err != nil {
					t.Fatalf("Release %q: %v", key, err)
				}
			}
			// Caches the scripts on the servers, through a driver closed
			// first: Close waits for its release's calls still running
			// on the minority node, which would otherwise be counted.
			warm := nodes.driver(t, opts)
			pair(warm, "warm")
			warm.Close()
			d := nodes.driver(t, opts)
			for i := range nodes {
				if err := nodes[i].Client(t).ConfigResetStat(ctx).Err(); err != nil {
					t.Fatal(err)
				}
			}
			for i := range pairs {
				pair(d, "pair-"+strconv.Itoa(i))
			}
			d.Close()
			for i := range nodes {
				s := commandStats(t, ctx, nodes, i)
				wantSet, wantScripts := pairs, pairs // SET NX PX; the release
				if fencing {
					// Both are scripts; the acquire script's SETs (lock
					// and fence key) count as commands too.
					wantSet, wantScripts = 2*pairs, 2*pairs
				}
				if s["set"] != wantSet || s["evalsha"] != wantScripts || s["eval"] != 0 {
					t.Errorf("node %d: SET %d, EVALSHA %d, EVAL %d for %d pairs; want %d, %d, 0",
						i, s["set"], s["evalsha"], s["eval"], pairs, wantSet, wantScripts)
				}
			}
		})
	}
}

// commandStats returns node i's calls by command (lower case, as INFO
// commandstats names them; a script's commands included) since its
// counters were reset.
func commandStats(t *testing.T, ctx context.Context, nodes redisNodes, i int) map[string]int {
	t.Helper()
	info, err := nodes[i].Client(t).Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	stats := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "cmdstat_"); ok {
			name, fields, _ := strings.Cut(rest, ":")
			calls, _, _ := strings.Cut(strings.TrimPrefix(fields, "calls="), ",")
			stats[name], _ = strconv.Atoi(calls)
		}
	}
	return stats
}
