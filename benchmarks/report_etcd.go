package main

import "fmt"

// etcdPairScenarios are the pair scenarios of the etcd section, in table
// order.
var etcdPairScenarios = []string{scEtcdPair, scEtcd8, scEtcd32}

// etcdTables renders the etcd section of one layout: ratios are to
// concurrency.Mutex in the same repeats.
func etcdTables(lr *LayoutResult) []*table {
	var out []*table
	for _, sc := range etcdPairScenarios {
		var rows []*PairRow
		var ref *PairRow
		for _, r := range lr.Pairs {
			if r.Scenario == sc {
				rows = append(rows, r)
				if r.Lib == libEtcdMutex {
					ref = r
				}
			}
		}
		if len(rows) == 0 {
			continue
		}
		t := &table{title: fmt.Sprintf("%s [%s; etcd Get RTT p50 %.1f µs]", scenarioTitles[sc], lr.Layout, lr.EtcdRTTus),
			head: []string{"library", "config", "pairs/s", "×Mutex pairs/s", "p50 µs", "p99 µs", "×Mutex p50", "p50/RTT", "allocs/pair", "server CPU µs/pair", "client CPU µs/pair", "errors"},
			note: "×Mutex: over concurrency.Mutex's figure in the same run (medians over repeats); RTT: a linearizable Get. server CPU: the etcd process's (and the idle Redis servers'). errors: failed attempts over all repeats, left out of the figures."}
		for _, r := range rows {
			xt, xp := "-", "-"
			if ref != nil && ref.PairsPerSec > 0 && ref.P50us > 0 {
				xt, xp = f2(r.PairsPerSec/ref.PairsPerSec), f2(r.P50us/ref.P50us)
			}
			t.add(r.Lib, r.Config, f0(r.PairsPerSec), xt, f1(r.P50us), f1(r.P99us), xp, f2(r.Ratio), f1(r.AllocsPerPair), f1(r.ServerCPUus), f1(r.ClientCPUus), fmt.Sprint(pairErrors(r)))
		}
		out = append(out, t)
	}
	if len(lr.EtcdHandoff) > 0 {
		h0 := lr.EtcdHandoff[0]
		t := &table{title: fmt.Sprintf("etcd: handoff, %d processes on one key, hold %.0f µs [%s; etcd Get RTT p50 %.1f µs]", h0.Procs, h0.HoldUs, lr.Layout, lr.EtcdRTTus),
			head: []string{"library", "config", "handoffs", "gap p50 µs", "gap p99 µs", "×Mutex", "from return p50 µs", "release µs", "grants/s", "FIFO share", "wait p50 µs", "wait p99 µs", "grants min/max", "overlaps", "errors"},
			note: "gap: from the holder's release call to the next holder's (another process) acquire returning. ×Mutex: the gap p50 over concurrency.Mutex's in the same repeat, median over repeats. " +
				"FIFO share: of the handoffs with two or more processes waiting, the share that went to the one that asked first; wait: from a Lock call to its grant; grants min/max: the fewest grants of a process over the most."}
		for _, r := range lr.EtcdHandoff {
			t.add(r.Lib, r.Config, fmt.Sprint(r.Handoffs), f1(r.P50us), f1(r.P99us), xOf(r.XMinimal), f1(r.RetP50us), f1(r.ReleaseP50), f0(r.PerSec),
				f2(r.FIFOShare), f0(r.WaitP50us), f0(r.WaitP99us), f2(r.GrantsMinMax), fmt.Sprint(r.Violations), handoffErrors(r))
		}
		out = append(out, t)
	}
	return out
}

func xOf(x float64) string {
	if x > 0 {
		return f2(x)
	}
	return "-"
}

// handoffErrors is a handoff row's errors column: the contenders' errors
// over all repeats, and the blocks that failed to run.
func handoffErrors(r *HandoffRow) string {
	errs := 0
	for _, x := range r.Repeats {
		errs += x.Errors
	}
	e := fmt.Sprint(errs)
	if r.FailedBlocks > 0 {
		e += fmt.Sprintf(" (+%d blocks)", r.FailedBlocks)
	}
	return e
}

// etcdTargets checks issue 27's targets for dlock's etcd driver against
// concurrency.Mutex: pair p50 ≤ 1.0×, pairs/s of 8 and 32 goroutines ≥
// 1.1×, handoff gap p50 ≤ 1.0× (median of the per-repeat ratios).
func etcdTargets(lr *LayoutResult, add func(name string, pass bool, format string, args ...any)) {
	d, m := findPair(lr, scEtcdPair, libDlock, cfgEtcdDriver, 1), findPair(lr, scEtcdPair, libEtcdMutex, "", 1)
	if d != nil && m != nil {
		r := d.P50us / m.P50us
		add("etcd pair: dlock p50 ≤ 1.0× concurrency.Mutex", r <= 1.0, "%.1f µs vs %.1f µs = %.2f×", d.P50us, m.P50us, r)
	}
	for _, sc := range []string{scEtcd8, scEtcd32} {
		d, m := findPair(lr, sc, libDlock, cfgEtcdDriver, 1), findPair(lr, sc, libEtcdMutex, "", 1)
		if d != nil && m != nil && m.PairsPerSec > 0 {
			r := d.PairsPerSec / m.PairsPerSec
			add(fmt.Sprintf("%s: dlock pairs/s ≥ 1.1× concurrency.Mutex", sc), r >= 1.1, "%.0f/s vs %.0f/s = %.2f×", d.PairsPerSec, m.PairsPerSec, r)
		}
	}
	for _, r := range lr.EtcdHandoff {
		if r.Lib == libDlock {
			add("etcd handoff: dlock gap p50 ≤ 1.0× concurrency.Mutex", r.XMinimal > 0 && r.XMinimal <= 1.0,
				"%.1f µs, %.2f× (median of per-repeat ratios); FIFO share %.2f", r.P50us, r.XMinimal, r.FIFOShare)
		}
	}
}
