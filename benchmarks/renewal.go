package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/redis/go-redis/v9"
)

// rtCounter is a go-redis hook that counts round trips: every command sent
// alone is one, every pipeline is one.
type rtCounter struct {
	single, pipelines, piped atomic.Int64
}

func (h *rtCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *rtCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.single.Add(1)
		return next(ctx, cmd)
	}
}

func (h *rtCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.pipelines.Add(1)
		h.piped.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func (h *rtCounter) roundTrips() int64 { return h.single.Load() + h.pipelines.Load() }

// serverReads returns the read events the server has processed (INFO
// stats total_reads_processed): one per read of a client socket, of up to
// 16 KiB. It counts round trips on the server for every client library
// alike (rueidislock too), as long as requests are small: a large pipeline
// takes several reads.
func serverReads(ctx context.Context, c *redis.Client) (int64, error) {
	info, err := c.Info(ctx, "stats").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, "total_reads_processed:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no total_reads_processed in INFO stats")
}

// commandStats returns the calls per command of INFO commandstats.
func commandStats(ctx context.Context, c *redis.Client) (map[string]int64, error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		name, v, ok := strings.Cut(line, ":calls=")
		if !ok {
			continue
		}
		v, _, _ = strings.Cut(v, ",")
		n, _ := strconv.ParseInt(v, 10, 64)
		m[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return m, nil
}

// scripts sums the calls of the script commands (EVAL, EVALSHA, their _RO
// forms, FCALL). Every library here renews and (but redsync) acquires with
// a script; commands run inside scripts are counted apart by Redis and
// left out.
func scripts(m map[string]int64) int64 {
	var n int64
	for k, v := range m {
		if strings.HasPrefix(k, "eval") || strings.HasPrefix(k, "fcall") {
			n += v
		}
	}
	return n
}

// scriptCalls returns scripts(commandStats(c)).
func scriptCalls(ctx context.Context, c *redis.Client) (int64, error) {
	m, err := commandStats(ctx, c)
	return scripts(m), err
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// renewalScenario holds renewLeases leases in this process for renewDur
// and counts goroutines, round trips, commands and lost leases.
func (c *client) renewalScenario(ctx context.Context) error {
	ttl := c.cfg.renewTTL
	type cand struct {
		spec       libSpec
		servers    []int // indexes into c.all
		renewEvery time.Duration
	}
	var cands []cand
	for _, s := range filterLibs(singleNode(), c.cfg.libs, func(s libSpec) bool {
		return s.Config == cfgBest && (s.Name == libDlock || s.Name == libRueidis)
	}) {
		every := ttl / 3
		if s.Name == libRueidis {
			every = ttl / 2 // its ExtendInterval default
		}
		cands = append(cands, cand{s, []int{0}, every})
	}
	if len(c.e.nodes) >= 3 {
		for _, s := range filterLibs(quorum(3), c.cfg.libs, func(s libSpec) bool { return s.Name == libRedlock && s.Config == "fencing on" }) {
			cands = append(cands, cand{s, []int{1, 2, 3}, ttl / 3})
		}
	}
	var errs []error
	for _, cd := range cands {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A tenth of the leases first, briefly: the goroutine count must
		// not grow with the number of leases.
		c.flush(ctx)
		small, err := c.renewalRun(ctx, cd.spec, cd.servers, cd.renewEvery, max(c.cfg.renewLeases/10, 1), min(c.cfg.renewDur, 3*cd.renewEvery))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", cd.spec.label(), err))
			continue
		}
		c.flush(ctx)
		row, err := c.renewalRun(ctx, cd.spec, cd.servers, cd.renewEvery, c.cfg.renewLeases, c.cfg.renewDur)
		if row != nil {
			row.SmallLeases, row.GoroutinesMaxSmall = small.Acquired, small.GoroutinesMax
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", cd.spec.label(), err))
		}
		if row != nil {
			c.res.Renewal = append(c.res.Renewal, row)
		}
	}
	return errors.Join(errs...)
}

func (c *client) renewalRun(ctx context.Context, s libSpec, servers []int, every time.Duration, n int, dur time.Duration) (*RenewRow, error) {
	ttl := c.cfg.renewTTL
	counters := map[string]*rtCounter{}
	var mu sync.Mutex
	e := c.e
	e.ttl = ttl
	e.hook = func(addr string) redis.Hook {
		mu.Lock()
		defer mu.Unlock()
		h := &rtCounter{}
		counters[addr] = h
		return h
	}
	row := &RenewRow{Lib: s.Name, Config: s.Config, Nodes: s.Nodes, Leases: n,
		TTLms: float64(ttl) / 1e6, RenewEveryMs: float64(every) / 1e6}
	l, err := s.open(e)
	if err != nil {
		return nil, err
	}
	closed := false
	defer func() {
		if !closed {
			l.Close()
		}
	}()
	// Warm up, then count the idle goroutines.
	if h, err := l.TryLock(ctx, "renew:warm"); err == nil {
		h.Release(ctx)
	} else {
		return nil, err
	}
	time.Sleep(50 * time.Millisecond)
	row.GoroutinesIdle = runtime.NumGoroutine()

	held := make([]releaser, n)
	t0 := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var acqErr atomic.Value
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				h, err := l.TryLock(ctx, "renew:"+strconv.Itoa(i))
				if err != nil {
					acqErr.CompareAndSwap(nil, err)
					continue
				}
				held[i] = h
			}
		})
	}
	wg.Wait()
	row.AcquireSeconds = time.Since(t0).Seconds()
	for _, h := range held {
		if h != nil {
			row.Acquired++
		}
	}
	if err, _ := acqErr.Load().(error); err != nil {
		fmt.Fprintf(os.Stderr, "%s: acquire: %v\n", s.label(), err)
	}

	// Hold: sample goroutines; count round trips and commands.
	calls0 := make([]int64, len(servers))
	reads0 := make([]int64, len(servers))
	for i, si := range servers {
		calls0[i], _ = scriptCalls(ctx, c.all[si])
		reads0[i], _ = serverReads(ctx, c.all[si])
	}
	rt0 := map[string]int64{}
	for a, h := range counters {
		rt0[a] = h.roundTrips()
	}
	cpu0 := cpuTime()
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	for time.Since(start) < dur && ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
		row.GoroutinesMax = max(row.GoroutinesMax, runtime.NumGoroutine())
	}
	tick.Stop()
	elapsed := time.Since(start)
	row.CPUSeconds = (cpuTime() - cpu0).Seconds()
	row.Seconds = elapsed.Seconds()
	row.Periods = elapsed.Seconds() / every.Seconds()
	var cmds, worstReads int64
	for i, si := range servers {
		calls, _ := scriptCalls(ctx, c.all[si])
		cmds += calls - calls0[i]
		reads, _ := serverReads(ctx, c.all[si])
		// Less the admin INFO calls of this window (one each side).
		worstReads = max(worstReads, reads-reads0[i]-2)
	}
	row.ServerReads = float64(worstReads) / row.Periods
	if row.Acquired > 0 {
		row.ServerReadsPer1k = row.ServerReads / (float64(row.Acquired) / 1000)
	}
	row.ScriptsPerNode = float64(cmds) / float64(len(servers)) / row.Periods
	if len(counters) > 0 {
		row.RoundTripsCounted = true
		var worst int64
		for a, h := range counters {
			worst = max(worst, h.roundTrips()-rt0[a])
		}
		row.RoundTrips = float64(worst) / row.Periods
		if row.Acquired > 0 {
			row.RoundTripsPer1k = row.RoundTrips / (float64(row.Acquired) / 1000)
		}
	}
	for _, h := range held {
		if h != nil && lost(h) {
			row.Lost++
		}
	}

	// Release everything, then close.
	next.Store(0)
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if held[i] != nil {
					held[i].Release(ctx)
				}
			}
		})
	}
	wg.Wait()
	time.Sleep(100 * time.Millisecond)
	row.GoroutinesAfter = runtime.NumGoroutine()
	closed = true
	l.Close()
	return row, nil
}

// lost reports whether a held lock has been lost, for the libraries that
// tell.
func lost(h releaser) bool {
	switch v := h.(type) {
	case *dlock.Lease:
		return v.Err() != nil
	case rueidisLock:
		return v.ctx.Err() != nil
	}
	return false
}
