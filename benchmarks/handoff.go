package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// handoffScenario: handoffProcs contender processes loop on one key —
// acquire (waiting), hold for -hold, release — for -handoff-dur. Each
// measured gap runs from one holder's release call (and, separately, its
// return) to the next holder's acquire returning, in another process.
//
// The libraries' repeats are interleaved, as in the pair scenarios: every
// repeat runs each library once, in an order rotated per repeat, and each
// library's block is bracketed by a round-trip block of its own. A
// library's figure relative to the reference (the spec ref matches: the
// minimal queued lock on Redis, concurrency.Mutex on etcd) is taken
// within each repeat, then the median of those ratios is reported.
func (c *client) handoffScenario(ctx context.Context, specs []libSpec, b backend, isRef func(libSpec) bool) ([]*HandoffRow, error) {
	dir, err := os.MkdirTemp("", "dlock-handoff-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	rows := make([]*HandoffRow, len(specs))
	for i, s := range specs {
		rows[i] = &HandoffRow{Lib: s.Name, Config: s.Config, Procs: c.cfg.handoffProcs, HoldUs: usDur(c.cfg.hold)}
	}
	ref := slices.IndexFunc(specs, isRef)
	var errs []error
	for rep := range c.cfg.repeats {
		samples := make([]*HandoffSample, len(specs))
		for j := range specs {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			i := (j + rep) % len(specs)
			s := specs[i]
			b.flush(ctx)
			before := b.rtt(ctx)
			hs, err := c.handoffBlock(ctx, s, b, filepath.Join(dir, "shm"), fmt.Sprintf("handoff%d", rep))
			after := b.rtt(ctx)
			if err != nil {
				rows[i].FailedBlocks++
				errs = append(errs, fmt.Errorf("%s (repeat %d): %w", s.label(), rep, err))
				continue
			}
			hs.RTTus = (before + after) / 2
			if hs.RTTus > 0 {
				hs.Ratio = hs.P50us / hs.RTTus
			}
			samples[i] = &hs
		}
		for i, hs := range samples {
			if hs == nil {
				continue
			}
			if ref >= 0 && samples[ref] != nil && samples[ref].P50us > 0 {
				hs.XMinimal = hs.P50us / samples[ref].P50us
			}
			rows[i].Repeats = append(rows[i].Repeats, *hs)
		}
	}
	var out []*HandoffRow
	for _, r := range rows {
		if len(r.Repeats) > 0 {
			r.HandoffSample = medianHandoff(r.Repeats)
			out = append(out, r)
		}
	}
	return out, errors.Join(errs...)
}

type hold struct {
	proc         int
	w, a, rc, rr int64 // acquire called, returned, release called, returned (CLOCK_MONOTONIC ns)
}

func (c *client) handoffBlock(ctx context.Context, s libSpec, b backend, shmPath, key string) (HandoffSample, error) {
	var hs HandoffSample
	sh, err := createShared(shmPath)
	if err != nil {
		return hs, err
	}
	defer sh.close()
	var kids []*child
	defer func() {
		for _, k := range kids {
			k.kill()
		}
	}()
	for i := range c.cfg.handoffProcs {
		k, err := c.spawn("contender", "-lib", s.label(), "-key", key, "-shm", shmPath,
			"-id", strconv.Itoa(i), "-hold", c.cfg.hold.String())
		if err != nil {
			return hs, err
		}
		kids = append(kids, k)
	}
	for _, k := range kids {
		if _, err := k.expect("ready", 20*time.Second); err != nil {
			return hs, err
		}
	}
	var reads0 int64
	if b.redisStats {
		c.all[0].ConfigResetStat(ctx)
		reads0, _ = serverReads(ctx, c.all[0])
	}
	t0 := monoNow()
	for _, k := range kids {
		k.send("go")
	}
	select {
	case <-time.After(c.cfg.handoffDur):
	case <-ctx.Done():
	}
	sh.setStop()
	t1 := monoNow()
	for _, k := range kids {
		k.stdin.Close() // ends waits in Lock
	}
	var holds []hold
	for _, k := range kids {
		for _, line := range k.finish(10 * time.Second) {
			f := strings.Fields(line)
			switch {
			case len(f) == 6 && f[0] == "H":
				var h hold
				h.proc, _ = strconv.Atoi(f[1])
				h.w, _ = strconv.ParseInt(f[2], 10, 64)
				h.a, _ = strconv.ParseInt(f[3], 10, 64)
				h.rc, _ = strconv.ParseInt(f[4], 10, 64)
				h.rr, _ = strconv.ParseInt(f[5], 10, 64)
				if h.a <= t1 {
					holds = append(holds, h)
				}
			case len(f) > 0 && f[0] == "error":
				hs.Errors++
				if hs.Errors <= 3 {
					fmt.Fprintf(os.Stderr, "%s contender: %s\n", s.label(), line)
				}
			}
		}
	}
	kids = nil
	if st, err := commandStats(ctx, c.all[0]); b.redisStats && err == nil && len(holds) > 0 {
		g := float64(len(holds))
		if reads1, err := serverReads(ctx, c.all[0]); err == nil {
			hs.ReadsPerGrant = float64(reads1-reads0) / g
		}
		hs.ScriptsPerGrant = float64(scripts(st)) / g
		hs.CommandsPerGrant = map[string]float64{}
		for k, v := range st {
			if k != "config|resetstat" && k != "info" {
				hs.CommandsPerGrant[k] = float64(v) / g
			}
		}
	}
	slices.SortFunc(holds, func(x, y hold) int { return int(x.a - y.a) })
	var gapsCall, gapsRet, rel []int64
	for k := 0; k+1 < len(holds); k++ {
		cur, nxt := holds[k], holds[k+1]
		rel = append(rel, cur.rr-cur.rc)
		if nxt.a < cur.rc {
			hs.Violations++ // granted before the holder even let go
		}
		if nxt.proc == cur.proc {
			hs.Self++
			continue
		}
		gapsCall = append(gapsCall, nxt.a-cur.rc)
		gapsRet = append(gapsRet, nxt.a-cur.rr)
	}
	hs.Handoffs = len(gapsCall)
	hs.Seconds = float64(t1-t0) / 1e9
	hs.PerSec = float64(len(holds)) / hs.Seconds
	hs.P50us = us(quantile(gapsCall, 0.5))
	hs.P99us = us(quantile(gapsCall, 0.99))
	hs.RetP50us = us(quantile(gapsRet, 0.5))
	hs.RetP99us = us(quantile(gapsRet, 0.99))
	hs.ReleaseP50 = us(quantile(rel, 0.5))
	fairness(&hs, holds, c.cfg.handoffProcs)
	if hs.Handoffs == 0 {
		return hs, fmt.Errorf("no handoff in %v (%d errors)", c.cfg.handoffDur, hs.Errors)
	}
	return hs, nil
}

func medianHandoff(ss []HandoffSample) HandoffSample {
	f := func(g func(HandoffSample) float64) float64 { return medianOf(ss, g) }
	return HandoffSample{
		Handoffs:        int(f(func(s HandoffSample) float64 { return float64(s.Handoffs) })),
		Self:            int(f(func(s HandoffSample) float64 { return float64(s.Self) })),
		Violations:      int(f(func(s HandoffSample) float64 { return float64(s.Violations) })),
		Errors:          int(f(func(s HandoffSample) float64 { return float64(s.Errors) })),
		Seconds:         f(func(s HandoffSample) float64 { return s.Seconds }),
		PerSec:          f(func(s HandoffSample) float64 { return s.PerSec }),
		P50us:           f(func(s HandoffSample) float64 { return s.P50us }),
		P99us:           f(func(s HandoffSample) float64 { return s.P99us }),
		RetP50us:        f(func(s HandoffSample) float64 { return s.RetP50us }),
		RetP99us:        f(func(s HandoffSample) float64 { return s.RetP99us }),
		RTTus:           f(func(s HandoffSample) float64 { return s.RTTus }),
		Ratio:           f(func(s HandoffSample) float64 { return s.Ratio }),
		ReleaseP50:      f(func(s HandoffSample) float64 { return s.ReleaseP50 }),
		ScriptsPerGrant: f(func(s HandoffSample) float64 { return s.ScriptsPerGrant }),
		ReadsPerGrant:   f(func(s HandoffSample) float64 { return s.ReadsPerGrant }),
		FIFOShare:       f(func(s HandoffSample) float64 { return s.FIFOShare }),
		WaitP50us:       f(func(s HandoffSample) float64 { return s.WaitP50us }),
		WaitP99us:       f(func(s HandoffSample) float64 { return s.WaitP99us }),
		GrantsMinMax:    f(func(s HandoffSample) float64 { return s.GrantsMinMax }),
		XMinimal:        f(func(s HandoffSample) float64 { return s.XMinimal }),
	}
}

// runContender is a handoff contender process.
func runContender(ctx context.Context, cfg *config) error {
	l, _, err := childLib(cfg)
	if err != nil {
		return err
	}
	defer l.Close()
	sh, err := openShared(cfg.shm)
	if err != nil {
		return err
	}
	defer sh.close()
	if err := warmUp(ctx, l, fmt.Sprintf("%s:warm:%d", cfg.key, cfg.id)); err != nil {
		return err
	}
	ctx, start := childIO(ctx)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	fmt.Fprintln(out, "ready")
	out.Flush()
	select {
	case <-start:
	case <-ctx.Done():
		return nil
	}
	var holds []hold
	var errs []string
	for !sh.stopped() && ctx.Err() == nil {
		w := monoNow()
		h, err := l.Lock(ctx, cfg.key)
		a := monoNow()
		if err != nil {
			if ctx.Err() == nil && !sh.stopped() {
				errs = append(errs, err.Error())
			}
			continue
		}
		mine := sh.granted()
		// Hold for a time drawn uniformly from [hold/2, 3·hold/2]: with
		// a fixed hold, a poller whose interval matches it (a 1 ms
		// backoff against a 1 ms hold) falls into step with the holder
		// and polls just as it releases, flattering polling.
		time.Sleep(time.Duration((0.5 + rand.Float64()) * float64(cfg.hold)))
		rc := monoNow()
		err = h.Release(context.WithoutCancel(ctx))
		rr := monoNow()
		if err != nil {
			errs = append(errs, "release: "+err.Error())
		}
		holds = append(holds, hold{proc: cfg.id, w: w, a: a, rc: rc, rr: rr})
		sh.waitOther(mine)
	}
	for _, h := range holds {
		fmt.Fprintf(out, "H %d %d %d %d %d\n", h.proc, h.w, h.a, h.rc, h.rr)
	}
	for _, e := range errs {
		fmt.Fprintf(out, "error %s\n", strings.ReplaceAll(e, "\n", " "))
	}
	return nil
}

// warmUp opens connections and loads scripts with a few pairs on a key of
// its own. Errors are retried for a while: a loaded machine can make the
// first calls slow (rueidislock gives up on an acquire after 20ms).
func warmUp(ctx context.Context, l lib, key string) error {
	var err error
	ok := 0
	for i := 0; i < 50 && ok < 3; i++ {
		var h releaser
		h, err = l.TryLock(ctx, key+":"+strconv.Itoa(i))
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		h.Release(ctx)
		ok++
	}
	if ok < 3 {
		return fmt.Errorf("warm-up: %w", err)
	}
	return nil
}

// fairness sets the fairness figures of a block from its holds, sorted by
// grant: the share of handoffs that went to the process that had waited
// longest (first come, first served), among those with at least two
// processes waiting at the release call; the wait from a Lock call to its
// grant; and the fewest grants of a process over the most.
func fairness(hs *HandoffSample, holds []hold, procs int) {
	fifo, choices := 0, 0
	for k := 0; k+1 < len(holds); k++ {
		cur, nxt := holds[k], holds[k+1]
		// The processes waiting when cur released: called Lock before,
		// granted after. Each has one Lock outstanding, so they are
		// among the next procs grants.
		first, waiting := int64(-1), 0
		for _, h := range holds[k+1 : min(len(holds), k+1+2*procs)] {
			if h.w <= cur.rc && h.a > cur.rc && h.proc != cur.proc {
				waiting++
				if first < 0 || h.w < first {
					first = h.w
				}
			}
		}
		if waiting < 2 {
			continue
		}
		choices++
		if nxt.w == first {
			fifo++
		}
	}
	if choices > 0 {
		hs.FIFOShare = float64(fifo) / float64(choices)
	}
	waits := make([]int64, 0, len(holds))
	per := map[int]int{}
	for _, h := range holds {
		waits = append(waits, h.a-h.w)
		per[h.proc]++
	}
	hs.WaitP50us = us(quantile(waits, 0.5))
	hs.WaitP99us = us(quantile(waits, 0.99))
	lo, hi := 0, 0
	for p := range procs {
		n := per[p]
		if p == 0 || n < lo {
			lo = n
		}
		hi = max(hi, n)
	}
	if hi > 0 {
		hs.GrantsMinMax = float64(lo) / float64(hi)
	}
}
