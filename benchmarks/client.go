package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// scenario names, in run order.
const (
	scPairNew  = "pair-new"
	scPairSame = "pair-same"
	scPair8    = "pair-8"
	scPair32   = "pair-32"
	scPair128  = "pair-128"
	scRedlock  = "redlock"
	scHandoff  = "handoff"
	scKilled   = "killed"
	scRenewal  = "renewal"
	// The etcd section (client_etcd.go).
	scEtcdPair    = "etcd-pair"
	scEtcd8       = "etcd-8"
	scEtcd32      = "etcd-32"
	scEtcdHandoff = "etcd-handoff"
)

func scenarioNames() []string {
	return []string{scPairNew, scPairSame, scPair8, scPair32, scPair128, scRedlock, scHandoff, scKilled, scRenewal,
		scEtcdPair, scEtcd8, scEtcd32, scEtcdHandoff}
}

var scenarioTitles = map[string]string{
	scPairNew:  "Uncontended try-acquire+release, 1 goroutine, new key each time",
	scPairSame: "Uncontended try-acquire+release, 1 goroutine, same key",
	scPair8:    "Throughput: try-acquire+release, 8 goroutines, each on its own key",
	scPair32:   "Throughput: try-acquire+release, 32 goroutines, each on its own key",
	scPair128:  "Throughput: try-acquire+release, 128 goroutines, each on its own key",
	scRedlock:  "Quorum try-acquire+release (new key each time), 1 goroutine",
	scEtcdPair: "etcd: uncontended try-acquire+release, 1 goroutine, new key each time",
	scEtcd8:    "etcd: throughput, try-acquire+release, 8 goroutines, each on its own key",
	scEtcd32:   "etcd: throughput, try-acquire+release, 32 goroutines, each on its own key",
}

// throughputScenarios are the pair scenarios with many goroutines, each on
// its own key: they measure pairs/s, which the one Redis thread bounds.
var throughputScenarios = []string{scPair8, scPair32, scPair128}

// scenarioGoroutines is how many goroutines run pairs in scenario sc.
func scenarioGoroutines(sc string) int {
	switch sc {
	case scPair8, scEtcd8:
		return 8
	case scPair32, scEtcd32:
		return 32
	case scPair128:
		return 128
	}
	return 1
}

func (c *config) wants(sc string) bool {
	if c.scenarios == "" {
		return true
	}
	return slices.Contains(strings.Split(c.scenarios, ","), sc)
}

// client is the client role's state.
type client struct {
	cfg  *config
	e    env
	ping *redis.Client
	all  []*redis.Client // admin connections to every server
	res  *LayoutResult
	rtts []float64
	etcd *etcdAdmin // the etcd section's admin client (nil without etcd)
}

// backend is the server side of a scenario: how its servers are emptied
// between blocks, the round trip its ratios divide by, and whether the
// handoff counts Redis's own statistics (INFO) per grant.
type backend struct {
	flush      func(context.Context)
	rtt        func(context.Context) float64
	redisStats bool
}

// redis is the backend of the Redis scenarios.
func (c *client) redis() backend { return backend{flush: c.flush, rtt: c.pingRTT, redisStats: true} }

func runClient(ctx context.Context, cfg *config) error {
	addrs := strings.Split(cfg.addrs, ",")
	if len(addrs) < 1 || addrs[0] == "" {
		return errors.New("no -addrs")
	}
	c := &client{cfg: cfg, e: env{main: addrs[0], nodes: addrs[1:], etcd: cfg.etcd}}
	c.ping = redis.NewClient(&redis.Options{Addr: addrs[0], PoolSize: 1})
	defer c.ping.Close()
	for _, a := range addrs {
		rc := redis.NewClient(&redis.Options{Addr: a, PoolSize: 2})
		defer rc.Close()
		c.all = append(c.all, rc)
	}
	for _, rc := range c.all {
		watchServer(ctx, rc)
	}
	c.res = &LayoutResult{Layout: cfg.layout, GOMAXPROCS: runtime.GOMAXPROCS(0), ClientCPU: affinity()}
	if cfg.etcd != "" {
		ec, err := newEtcdAdmin(cfg)
		if err != nil {
			return err
		}
		defer ec.close()
		c.etcd = ec
	}

	for _, sc := range scenarioNames() {
		if !cfg.wants(sc) || ctx.Err() != nil {
			continue
		}
		fmt.Fprintf(os.Stderr, "[%s] %s\n", cfg.layout, sc)
		var err error
		switch sc {
		case scPairNew, scPairSame, scPair8, scPair32, scPair128:
			err = c.pairScenario(ctx, sc, filterLibs(singleNode(), cfg.libs, func(s libSpec) bool { return s.Config != cfgQueued }), c.redis())
		case scRedlock:
			specs := filterLibs(singleNode(), "", func(s libSpec) bool { return s.Name == libDlock && s.Config == cfgBest })
			if len(c.e.nodes) >= 3 {
				specs = append(specs, filterLibs(quorum(3), cfg.libs, nil)...)
			}
			if len(c.e.nodes) >= 5 {
				specs = append(specs, filterLibs(quorum(5), cfg.libs, nil)...)
			}
			err = c.pairScenario(ctx, sc, specs, c.redis())
		case scHandoff:
			var rows []*HandoffRow
			rows, err = c.handoffScenario(ctx, filterLibs(singleNode(), cfg.libs, func(s libSpec) bool { return s.Name != libMinimal || s.Config == cfgQueued }),
				c.redis(), func(s libSpec) bool { return s.Name == libMinimal })
			c.res.Handoff = append(c.res.Handoff, rows...)
		case scKilled:
			err = c.killedScenario(ctx, filterLibs(singleNode(), cfg.libs, func(s libSpec) bool { return s.Name != libMinimal }))
		case scRenewal:
			err = c.renewalScenario(ctx)
		case scEtcdPair, scEtcd8, scEtcd32, scEtcdHandoff:
			err = c.etcdScenario(ctx, sc)
		}
		if err != nil {
			msg := fmt.Sprintf("%s: %v", sc, err)
			fmt.Fprintln(os.Stderr, "error:", msg)
			c.res.Errors = append(c.res.Errors, msg)
		}
	}
	if cfg.profile != "" {
		if err := c.profileDlock(ctx); err != nil {
			c.res.Errors = append(c.res.Errors, "profile: "+err.Error())
		}
	}
	c.res.RTTus = median(c.rtts)
	if c.etcd != nil {
		c.res.EtcdRTTus = median(c.etcd.rtts)
	}
	b, err := json.MarshalIndent(c.res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(cfg.resultFile, b, 0o644)
}

// affinity returns the CPUs this process may run on, as taskset prints
// them.
func affinity() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// flush empties every server between measurements (scripts stay loaded).
func (c *client) flush(ctx context.Context) {
	for _, rc := range c.all {
		rc.FlushAll(ctx)
	}
}

// pingRTT measures the go-redis PING round trip: the median of n
// sequential PINGs on one connection, in µs.
func (c *client) pingRTT(ctx context.Context) float64 {
	n := c.cfg.pingN
	lat := make([]int64, 0, n)
	for range n {
		t := time.Now()
		if err := c.ping.Ping(ctx).Err(); err != nil {
			return 0
		}
		lat = append(lat, int64(time.Since(t)))
	}
	r := us(quantile(lat, 0.5))
	c.rtts = append(c.rtts, r)
	return r
}

// pairKeys returns the key a goroutine uses for its i-th pair.
type keyFunc func(g, i int) string

func keysFor(sc, prefix string) keyFunc {
	switch sc {
	case scPairSame:
		k := prefix + ":same"
		return func(int, int) string { return k }
	case scPair8, scPair32, scPair128, scEtcd8, scEtcd32:
		ks := make([]string, scenarioGoroutines(sc))
		for g := range ks {
			ks[g] = prefix + ":g" + strconv.Itoa(g)
		}
		return func(g, _ int) string { return ks[g] }
	default: // a new key each time
		return func(g, i int) string { return prefix + ":" + strconv.Itoa(g) + ":" + strconv.Itoa(i) }
	}
}

// measurePairs runs try-acquire+release pairs from goroutines goroutines
// for dur and returns the block's figures (without the RTT).
func measurePairs(ctx context.Context, l lib, keys keyFunc, goroutines int, dur time.Duration, start int) (PairSample, int, error) {
	type gres struct {
		lat  []int64
		busy int
		errs int
		err  error
		n    int
	}
	out := make([]gres, goroutines)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	srv0, cli0 := serverCPU(), cpuTime()
	t0 := time.Now()
	stop := t0.Add(dur)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			r := &out[g]
			r.lat = make([]int64, 0, 1<<14)
			for i := start; ; i++ {
				t := time.Now()
				if t.After(stop) || ctx.Err() != nil {
					r.n = i - start
					return
				}
				h, err := l.TryLock(ctx, keys(g, i))
				if errors.Is(err, errBusy) {
					r.busy++
					continue
				}
				if err == nil {
					if err = h.Release(ctx); err != nil {
						err = fmt.Errorf("release: %w", err)
					}
				}
				if err != nil {
					// Counted, not fatal: a loaded machine makes some
					// libraries time out (rueidislock after 20ms).
					r.errs++
					if r.errs > 100 && r.errs > len(r.lat) {
						r.err = err
						r.n = i - start
						return
					}
					continue
				}
				r.lat = append(r.lat, int64(time.Since(t)))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	srv1, cli1 := serverCPU(), cpuTime()
	runtime.ReadMemStats(&ms1)
	var all []int64
	var s PairSample
	n := 0
	for _, r := range out {
		if r.err != nil {
			return s, 0, r.err
		}
		all = append(all, r.lat...)
		s.Busy += r.busy
		s.Errors += r.errs
		n = max(n, r.n)
	}
	s.Pairs = len(all)
	s.Seconds = elapsed.Seconds()
	s.PairsPerSec = float64(s.Pairs) / s.Seconds
	s.P50us = us(quantile(all, 0.5))
	s.P99us = us(quantile(all, 0.99))
	if s.Pairs > 0 {
		s.ServerCPUus = usDur(srv1-srv0) / float64(s.Pairs)
		s.ClientCPUus = usDur(cli1-cli0) / float64(s.Pairs)
		s.AllocsPerPair = float64(ms1.Mallocs-ms0.Mallocs) / float64(s.Pairs)
		s.BytesPerPair = float64(ms1.TotalAlloc-ms0.TotalAlloc) / float64(s.Pairs)
	}
	return s, n, nil
}

// pairScenario measures every spec on scenario sc: per repeat a PING block,
// each library (in an order rotated per repeat), another PING block; each
// library's ratio is to the mean of the two PING medians.
func (c *client) pairScenario(ctx context.Context, sc string, specs []libSpec, b backend) error {
	goroutines := scenarioGoroutines(sc)
	b.flush(ctx)
	libs := make([]lib, len(specs))
	for i, s := range specs {
		l, err := s.open(c.e)
		if err != nil {
			return fmt.Errorf("%s: %w", s.label(), err)
		}
		defer l.Close()
		libs[i] = l
	}
	rows := make([]*PairRow, len(specs))
	next := make([]int, len(specs)) // key counters, so new keys stay new
	for i, s := range specs {
		rows[i] = &PairRow{Scenario: sc, Lib: s.Name, Config: s.Config, Nodes: s.Nodes, Goroutines: goroutines}
		// Warm up: connections, scripts, code paths.
		keys := keysFor(sc, fmt.Sprintf("b%d", i))
		_, n, err := measurePairs(ctx, libs[i], keys, goroutines, min(c.cfg.dur/4, 200*time.Millisecond), 0)
		if err != nil {
			return fmt.Errorf("%s: %w", s.label(), err)
		}
		next[i] = n + 1
	}
	for rep := range c.cfg.repeats {
		before := b.rtt(ctx)
		samples := make([]PairSample, len(specs))
		for j := range specs {
			i := (j + rep) % len(specs)
			keys := keysFor(sc, fmt.Sprintf("b%d", i))
			s, n, err := measurePairs(ctx, libs[i], keys, goroutines, c.cfg.dur, next[i])
			if err != nil {
				return fmt.Errorf("%s: %w", specs[i].label(), err)
			}
			next[i] += n + 1
			samples[i] = s
		}
		after := b.rtt(ctx)
		rtt := (before + after) / 2
		for i := range specs {
			s := samples[i]
			s.RTTus = rtt
			if rtt > 0 {
				s.Ratio = s.P50us / rtt
			}
			rows[i].Repeats = append(rows[i].Repeats, s)
		}
		if rep+1 < c.cfg.repeats {
			b.flush(ctx)
		}
	}
	for _, r := range rows {
		r.PairSample = medianPairs(r.Repeats)
		c.res.Pairs = append(c.res.Pairs, r)
	}
	return nil
}

func medianPairs(ss []PairSample) PairSample {
	return PairSample{
		Pairs:         int(medianOf(ss, func(s PairSample) float64 { return float64(s.Pairs) })),
		Busy:          int(medianOf(ss, func(s PairSample) float64 { return float64(s.Busy) })),
		Errors:        int(medianOf(ss, func(s PairSample) float64 { return float64(s.Errors) })),
		Seconds:       medianOf(ss, func(s PairSample) float64 { return s.Seconds }),
		PairsPerSec:   medianOf(ss, func(s PairSample) float64 { return s.PairsPerSec }),
		P50us:         medianOf(ss, func(s PairSample) float64 { return s.P50us }),
		P99us:         medianOf(ss, func(s PairSample) float64 { return s.P99us }),
		AllocsPerPair: medianOf(ss, func(s PairSample) float64 { return s.AllocsPerPair }),
		BytesPerPair:  medianOf(ss, func(s PairSample) float64 { return s.BytesPerPair }),
		ServerCPUus:   medianOf(ss, func(s PairSample) float64 { return s.ServerCPUus }),
		ClientCPUus:   medianOf(ss, func(s PairSample) float64 { return s.ClientCPUus }),
		RTTus:         medianOf(ss, func(s PairSample) float64 { return s.RTTus }),
		Ratio:         medianOf(ss, func(s PairSample) float64 { return s.Ratio }),
	}
}

// profileDlock writes a CPU profile and an allocation profile of dlock's
// uncontended pair (new key each time): on Redis, best settings, to
// PREFIX.cpu and PREFIX.alloc; on etcd, if the run has an etcd member, to
// PREFIX.etcd.cpu and PREFIX.etcd.alloc.
func (c *client) profileDlock(ctx context.Context) error {
	specs := filterLibs(singleNode(), "", func(s libSpec) bool { return s.Name == libDlock && s.Config == cfgBest })
	if err := c.profilePair(ctx, specs[0], c.cfg.profile); err != nil {
		return err
	}
	if c.etcd == nil {
		return nil
	}
	specs = filterLibs(etcdLibs(), "", func(s libSpec) bool { return s.Name == libDlock })
	return c.profilePair(ctx, specs[0], c.cfg.profile+".etcd")
}

func (c *client) profilePair(ctx context.Context, spec libSpec, prefix string) error {
	l, err := spec.open(c.e)
	if err != nil {
		return err
	}
	defer l.Close()
	keys := keysFor(scPairNew, "prof")
	if _, _, err := measurePairs(ctx, l, keys, 1, 200*time.Millisecond, 0); err != nil {
		return err
	}
	f, err := os.Create(prefix + ".cpu")
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	_, n, err := measurePairs(ctx, l, keys, 1, 3*c.cfg.dur, 1<<20)
	pprof.StopCPUProfile()
	if err != nil {
		return err
	}
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	_, _, err = measurePairs(ctx, l, keys, 1, c.cfg.dur, 1<<21+n)
	runtime.MemProfileRate = old
	if err != nil {
		return err
	}
	runtime.GC()
	m, err := os.Create(prefix + ".alloc")
	if err != nil {
		return err
	}
	defer m.Close()
	return pprof.Lookup("allocs").WriteTo(m, 0)
}

// serverPIDs are the redis-server processes whose CPU time the pair
// scenarios count.
var serverPIDs []int

// watchServer adds the server behind rc to serverPIDs (same host).
func watchServer(ctx context.Context, rc *redis.Client) {
	info, err := rc.Info(ctx, "server").Result()
	if err != nil {
		return
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			if pid, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				serverPIDs = append(serverPIDs, pid)
			}
		}
	}
}

// serverCPU returns the CPU time the servers have used, from the
// scheduler's accounting of every thread (/proc/PID/task/TID/schedstat,
// in ns): unlike their own latency figures, it leaves out the time they
// waited for a CPU.
func serverCPU() time.Duration {
	var total int64
	for _, pid := range serverPIDs {
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
			if err != nil {
				continue
			}
			if f := strings.Fields(string(b)); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				total += n
			}
		}
	}
	return time.Duration(total)
}
