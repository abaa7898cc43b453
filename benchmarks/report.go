package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// table is a titled grid, printed as text or Markdown.
type table struct {
	title string
	head  []string
	rows  [][]string
	note  string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) text(w io.Writer) {
	fmt.Fprintf(w, "\n%s\n", t.title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(t.head, "\t")+"\t")
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
	}
	tw.Flush()
	if t.note != "" {
		fmt.Fprintf(w, "%s\n", t.note)
	}
}

func (t *table) markdown(w io.Writer) {
	fmt.Fprintf(w, "\n**%s**\n\n", t.title)
	fmt.Fprintf(w, "| %s |\n", strings.Join(t.head, " | "))
	seps := make([]string, len(t.head))
	for i := range seps {
		seps[i] = "---:"
		if i < 2 {
			seps[i] = "---"
		}
	}
	fmt.Fprintf(w, "| %s |\n", strings.Join(seps, " | "))
	for _, r := range t.rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
	if t.note != "" {
		fmt.Fprintf(w, "\n%s\n", t.note)
	}
}

func f0(x float64) string { return fmt.Sprintf("%.0f", x) }
func f1(x float64) string { return fmt.Sprintf("%.1f", x) }
func f2(x float64) string { return fmt.Sprintf("%.2f", x) }

func libName(name string, nodes int) string {
	if nodes > 1 {
		return fmt.Sprintf("%s ×%d", name, nodes)
	}
	return name
}

func layoutTitle(lr *LayoutResult) string {
	return fmt.Sprintf("layout %s: redis-server on CPU %s, client on CPU %s (GOMAXPROCS=%d); go-redis PING RTT p50 %.1f µs",
		lr.Layout, lr.ServerCPU, lr.ClientCPU, lr.GOMAXPROCS, lr.RTTus)
}

// tables renders one layout.
func tables(lr *LayoutResult) []*table {
	var out []*table
	for _, sc := range append(append([]string{scPairNew, scPairSame}, throughputScenarios...), scRedlock) {
		var rows []*PairRow
		for _, r := range lr.Pairs {
			if r.Scenario == sc {
				rows = append(rows, r)
			}
		}
		if len(rows) == 0 {
			continue
		}
		ref, refName := refRow(rows, sc)
		t := &table{title: fmt.Sprintf("%s [%s]", scenarioTitles[sc], lr.Layout),
			head: []string{"library", "config", "pairs/s", "p50 µs", "p99 µs", "p50/RTT", "×" + refName, "allocs/pair", "server CPU µs/pair", "client CPU µs/pair", "errors"},
			note: "errors: failed attempts over all repeats (a busy key is not one), left out of the figures."}
		for _, r := range rows {
			rel := "-"
			if ref != nil && ref.P50us > 0 {
				rel = f2(r.P50us / ref.P50us)
			}
			t.add(libName(r.Lib, r.Nodes), r.Config, f0(r.PairsPerSec), f1(r.P50us), f1(r.P99us), f2(r.Ratio), rel, f1(r.AllocsPerPair), f1(r.ServerCPUus), f1(r.ClientCPUus), fmt.Sprint(pairErrors(r)))
		}
		out = append(out, t)
	}
	if len(lr.Handoff) > 0 {
		t := &table{title: fmt.Sprintf("Handoff: %d processes on one key, hold %.0f µs [%s]", lr.Handoff[0].Procs, lr.Handoff[0].HoldUs, lr.Layout),
			head: []string{"library", "config", "handoffs", "gap p50 µs", "gap p99 µs", "p50/RTT", "×minimal", "from return p50 µs", "release µs", "grants/s", "scripts/grant", "server reads/grant", "FIFO share", "wait p99 µs", "grants min/max", "overlaps", "errors"},
			note: "gap: from the holder's release call to the next holder's (another process) acquire returning; \"from return\": from the release returning. " +
				"Repeats interleaved, each library's block between two PING blocks of its own; ×minimal: the gap p50 over the minimal queued lock's in the same repeat, median over repeats. " +
				"server reads: INFO stats total_reads_processed (reads of client sockets, up to 16 KiB each: about one per round trip here). " +
				"FIFO share: of the handoffs with two or more processes waiting, the share that went to the one that asked first; wait: from a Lock call to its grant; grants min/max: the fewest grants of a process over the most. errors: errors the contenders reported, over all repeats (+ blocks that failed to run)."}
		for _, r := range lr.Handoff {
			t.add(r.Lib, r.Config, fmt.Sprint(r.Handoffs), f1(r.P50us), f1(r.P99us), f2(r.Ratio), xOf(r.XMinimal), f1(r.RetP50us), f1(r.ReleaseP50), f0(r.PerSec), f1(r.ScriptsPerGrant), f1(r.ReadsPerGrant),
				f2(r.FIFOShare), f0(r.WaitP99us), f2(r.GrantsMinMax), fmt.Sprint(r.Violations), handoffErrors(r))
		}
		out = append(out, t)
	}
	if len(lr.Killed) > 0 {
		t := &table{title: fmt.Sprintf("Holder killed (SIGKILL), TTL %.0f ms [%s]", lr.Killed[0].TTLms, lr.Layout),
			head: []string{"library", "config", "trials", "gap mean ms", "gap p50 ms", "gap max ms", "errors"},
			note: "gap: from the server-side expiry (PEXPIRETIME + 1 ms) to the waiter's acquire returning. The holder acquires at a random moment; the kill lands 0.55–0.9 × TTL after its acquire (after every renewing library's first renewal); trials interleaved across libraries."}
		for _, r := range lr.Killed {
			t.add(r.Lib, r.Config, fmt.Sprint(r.Trials), f1(r.MeanMs), f1(r.P50ms), f1(r.MaxMs), fmt.Sprint(len(r.Errors)))
		}
		out = append(out, t)
	}
	if len(lr.Renewal) > 0 {
		r0 := lr.Renewal[0]
		t := &table{title: fmt.Sprintf("Renewal at scale: %d leases for %.0f s, TTL %.0f ms [%s]", r0.Leases, r0.Seconds, r0.TTLms, lr.Layout),
			head: []string{"library", "config", "renew every ms", "goroutines idle", "max held", fmt.Sprintf("max, %d leases", r0.SmallLeases), "round trips/period/node", "per 1000 leases", "server reads/period/node", "per 1000 leases", "scripts/period/node", "lost", "client CPU %"},
			note: "round trips: counted by a go-redis hook (a pipeline is one; rueidislock is not on go-redis: n/a); server reads: INFO stats total_reads_processed on the busiest node, every library alike: reads of client sockets, up to 16 KiB each, so a small pipeline is one and a 1,000-command one several; scripts: EVAL/EVALSHA calls in INFO commandstats."}
		for _, r := range lr.Renewal {
			rt, per := "n/a", "n/a"
			if r.RoundTripsCounted {
				rt, per = f1(r.RoundTrips), f2(r.RoundTripsPer1k)
			}
			t.add(libName(r.Lib, r.Nodes), r.Config, f0(r.RenewEveryMs), fmt.Sprint(r.GoroutinesIdle), fmt.Sprint(r.GoroutinesMax), fmt.Sprint(r.GoroutinesMaxSmall),
				rt, per, f1(r.ServerReads), f2(r.ServerReadsPer1k), f0(r.ScriptsPerNode), fmt.Sprintf("%d/%d", r.Lost, r.Acquired), f1(100*r.CPUSeconds/r.Seconds))
		}
		out = append(out, t)
	}
	return append(out, etcdTables(lr)...)
}

func pairErrors(r *PairRow) int {
	n := 0
	for _, x := range r.Repeats {
		n += x.Errors
	}
	return n
}

// refRow is the row ratios are taken to: the minimal lock, or in the
// quorum scenario dlock on a single node.
func refRow(rows []*PairRow, sc string) (*PairRow, string) {
	for _, r := range rows {
		if sc == scRedlock && r.Lib == libDlock && r.Nodes == 1 {
			return r, "single"
		}
		if sc != scRedlock && r.Lib == libMinimal {
			return r, "minimal"
		}
	}
	return nil, "ref"
}

func printText(w io.Writer, res *Results) {
	m := res.Machine
	fmt.Fprintf(w, "\ndlock benchmarks — %s\nmachine: %s, %d CPUs, Linux %s, %s, redis-server %s, etcd %s, %s; load average %s at start, %s at end\n",
		res.Command, m.CPU, m.CPUs, m.Kernel, m.OS, m.Redis, m.Etcd, m.Go, m.LoadStart, m.LoadEnd)
	for _, lr := range res.Layouts {
		fmt.Fprintf(w, "\n== %s\n", layoutTitle(lr))
		for _, t := range tables(lr) {
			t.text(w)
		}
		for _, e := range lr.Errors {
			fmt.Fprintf(w, "error: %s\n", e)
		}
	}
	fmt.Fprintf(w, "\nTargets\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range res.Targets {
		verdict := "FAIL"
		if t.Pass {
			verdict = "pass"
		}
		fmt.Fprintf(tw, "%s\t[%s]\t%s\t%s\n", verdict, t.Layout, t.Name, t.Figure)
	}
	tw.Flush()
	fmt.Fprintf(w, "\ntook %s\n", res.Took)
}

func printMarkdown(w io.Writer, res *Results) {
	m := res.Machine
	fmt.Fprintf(w, "# dlock benchmark results\n\nCommand: `cd benchmarks && %s`\n\n", res.Command)
	fmt.Fprintf(w, "Machine: %s, %d CPUs; Linux %s; %s; redis-server %s; etcd %s; %s. Started %s, took %s; load average %s at start, %s at end.\n",
		m.CPU, m.CPUs, m.Kernel, m.OS, m.Redis, m.Etcd, m.Go, res.Started.Format("2006-01-02 15:04 UTC"), res.Took, m.LoadStart, m.LoadEnd)
	keys := slices.Sorted(maps.Keys(res.Settings))
	var set []string
	for _, k := range keys {
		set = append(set, fmt.Sprintf("%s %v", k, res.Settings[k]))
	}
	fmt.Fprintf(w, "\nSettings: %s.\n", strings.Join(set, ", "))
	for _, lr := range res.Layouts {
		fmt.Fprintf(w, "\n## %s\n", layoutTitle(lr))
		for _, t := range tables(lr) {
			t.markdown(w)
		}
		for _, e := range lr.Errors {
			fmt.Fprintf(w, "\nerror: %s\n", e)
		}
	}
	fmt.Fprintf(w, "\n## Targets\n\n| | layout | target | figure |\n| --- | --- | --- | --- |\n")
	for _, t := range res.Targets {
		v := "FAIL"
		if t.Pass {
			v = "pass"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", v, t.Layout, t.Name, t.Figure)
	}
}

// ---- targets ----

func findPair(lr *LayoutResult, sc, lib, cfg string, nodes int) *PairRow {
	for _, r := range lr.Pairs {
		if r.Scenario == sc && r.Lib == lib && (cfg == "" || r.Config == cfg) && r.Nodes == nodes {
			return r
		}
	}
	return nil
}

func checkTargets(res *Results) []Target {
	var ts []Target
	for _, lr := range res.Layouts {
		add := func(name string, pass bool, format string, args ...any) {
			ts = append(ts, Target{Layout: lr.Layout, Name: name, Pass: pass, Figure: fmt.Sprintf(format, args...)})
		}
		// Uncontended pair against the minimal lock, same client settings.
		for _, sc := range []string{scPairNew, scPairSame} {
			d, m := findPair(lr, sc, libDlock, cfgBest, 1), findPair(lr, sc, libMinimal, "", 1)
			if d == nil || m == nil {
				continue
			}
			r := d.P50us / m.P50us
			add(fmt.Sprintf("%s: dlock pair p50 ≤ 1.05× minimal lock", sc), r <= 1.05,
				"%.1f µs vs %.1f µs = %.3f× (%.2f× RTT vs %.2f×)", d.P50us, m.P50us, r, d.Ratio, m.Ratio)
			add(fmt.Sprintf("%s: dlock allocs/pair ≤ minimal + 10", sc), d.AllocsPerPair <= m.AllocsPerPair+10,
				"%.1f vs %.1f allocs (%.0f vs %.0f B)", d.AllocsPerPair, m.AllocsPerPair, d.BytesPerPair, m.BytesPerPair)
		}
		// Issue 15: with fences off, the pair p50 ≤ 1.02× the minimal lock's.
		for _, sc := range []string{scPairNew, scPairSame} {
			d, m := findPair(lr, sc, libDlock, cfgFencesOff, 1), findPair(lr, sc, libMinimal, "", 1)
			if d == nil || m == nil {
				continue
			}
			r := d.P50us / m.P50us
			add(fmt.Sprintf("%s: dlock fences off pair p50 ≤ 1.02× minimal lock", sc), r <= 1.02,
				"%.1f µs vs %.1f µs = %.3f× (server CPU %.1f vs %.1f µs/pair)", d.P50us, m.P50us, r, d.ServerCPUus, m.ServerCPUus)
		}
		// Issue 15: the uncontended pair p50 ≤ 1.0× the best peer's.
		for _, sc := range []string{scPairNew, scPairSame} {
			d := findPair(lr, sc, libDlock, cfgBest, 1)
			var best *PairRow
			for _, r := range lr.Pairs {
				if r.Scenario == sc && r.Nodes == 1 && r.Lib != libDlock && r.Lib != libMinimal && (best == nil || r.P50us < best.P50us) {
					best = r
				}
			}
			if d != nil && best != nil {
				r := d.P50us / best.P50us
				add(fmt.Sprintf("%s: dlock pair p50 ≤ 1.0× best peer", sc), r <= 1.0,
					"%.1f µs vs %s (%s) %.1f µs = %.2f×", d.P50us, best.Lib, best.Config, best.P50us, r)
			}
		}
		for _, sc := range append([]string{scPairNew, scPairSame}, throughputScenarios...) {
			need := 1.0 // issue 6: at least every peer's
			if scenarioGoroutines(sc) > 1 {
				need = 1.1 // issue 15: 1.1× the best peer's
			}
			var d *PairRow
			for _, c := range []string{cfgBest, cfgDefaults} {
				if r := findPair(lr, sc, libDlock, c, 1); r != nil && (d == nil || r.PairsPerSec > d.PairsPerSec) {
					d = r
				}
			}
			var best *PairRow
			for _, r := range lr.Pairs {
				if r.Scenario == sc && r.Nodes == 1 && r.Lib != libDlock && r.Lib != libMinimal && (best == nil || r.PairsPerSec > best.PairsPerSec) {
					best = r
				}
			}
			if d != nil && best != nil {
				r := d.PairsPerSec / best.PairsPerSec
				add(fmt.Sprintf("%s: dlock pairs/s ≥ %.1f× best peer", sc, need), r >= need,
					"dlock %s %.0f/s vs best peer %s (%s) %.0f/s = %.2f×", d.Config, d.PairsPerSec, best.Lib, best.Config, best.PairsPerSec, r)
			}
		}
		// Handoff.
		var dh, ph, floor *HandoffRow
		for _, r := range lr.Handoff {
			switch {
			case r.Lib == libMinimal:
				floor = r
			case r.Lib == libDlock && r.Config == cfgFencesOff:
				// The targets are for the fenced lock; fences off is
				// in the table for reference.
			case r.Lib == libDlock:
				if dh == nil || r.P50us < dh.P50us {
					dh = r
				}
			case ph == nil || r.P50us < ph.P50us:
				ph = r
			}
		}
		if dh != nil {
			rr := dh.RetP50us / dh.RTTus
			add("handoff: dlock gap from the release's return p50 ≤ 2.5× RTT", rr <= 2.5, "%.1f µs = %.2f× RTT (%.1f µs); from the call %.1f µs = %.2f×", dh.RetP50us, rr, dh.RTTus, dh.P50us, dh.Ratio)
			if ph != nil {
				r := dh.P50us / ph.P50us
				add("handoff: dlock gap p50 ≤ 0.75× best peer", r <= 0.75, "%.1f µs vs %s (%s) %.1f µs = %.2f×", dh.P50us, ph.Lib, ph.Config, ph.P50us, r)
			}
			if floor != nil {
				add("handoff: (for reference) minimal queued lock gap p50", true, "%.1f µs = %.2f× RTT; dlock %.2f× of it (median of per-repeat ratios)", floor.P50us, floor.Ratio, dh.XMinimal)
			}
		}
		// Holder killed.
		for _, r := range lr.Killed {
			if r.Lib == libDlock && r.Trials > 0 {
				add(fmt.Sprintf("holder killed: dlock (%s) next grant ≤ 5 ms after expiry", r.Config), r.MaxMs <= 5,
					"mean %.1f ms, p50 %.1f ms, max %.1f ms over %d trials", r.MeanMs, r.P50ms, r.MaxMs, r.Trials)
			}
		}
		// Redlock.
		single := findPair(lr, scRedlock, libDlock, cfgBest, 1)
		for _, n := range []int{3, 5} {
			on := findPair(lr, scRedlock, libRedlock, "fencing on", n)
			off := findPair(lr, scRedlock, libRedlock, "fencing off", n)
			if on != nil && single != nil && n == 5 {
				r := on.P50us / single.P50us
				add("redlock ×5 fencing on: pair p50 ≤ 1.6× single node", r <= 1.6, "%.1f µs vs %.1f µs = %.2f×", on.P50us, single.P50us, r)
			}
			var rs *PairRow
			for _, r := range lr.Pairs {
				if r.Scenario == scRedlock && r.Lib == libRedsync && r.Nodes == n && (rs == nil || r.P50us < rs.P50us) {
					rs = r
				}
			}
			if off != nil && rs != nil {
				add(fmt.Sprintf("redlock ×%d fencing off: pair p50 ≤ redsync quorum", n), off.P50us <= rs.P50us,
					"%.1f µs vs redsync (%s) %.1f µs = %.2f×", off.P50us, rs.Config, rs.P50us, off.P50us/rs.P50us)
			}
		}
		etcdTargets(lr, add)
		// Renewal.
		for _, r := range lr.Renewal {
			if r.Lib != libDlock && r.Lib != libRedlock {
				continue
			}
			name := libName(r.Lib, r.Nodes)
			// Renewal rounds in flight (up to 4, each with a goroutine per
			// node) may differ between the runs; leases may not.
			growth := r.GoroutinesMax - r.GoroutinesMaxSmall
			add(fmt.Sprintf("renewal %s: goroutines do not grow with leases", name), growth <= 4*(r.Nodes+1),
				"max %d holding %d leases, %d holding %d, %d idle", r.GoroutinesMax, r.Acquired, r.GoroutinesMaxSmall, r.SmallLeases, r.GoroutinesIdle)
			if r.RoundTripsCounted {
				// 1% for the edges of the measuring window.
				add(fmt.Sprintf("renewal %s: ≤ 1 round trip per 1000 leases per node per period", name), r.RoundTripsPer1k <= 1.01,
					"%.2f (%.1f round trips per %.0f ms period per node, %d leases)", r.RoundTripsPer1k, r.RoundTrips, r.RenewEveryMs, r.Acquired)
			}
			add(fmt.Sprintf("renewal %s: no lease lost", name), r.Lost == 0 && r.Acquired == r.Leases,
				"%d lost of %d (%d of %d acquired), %.0f s", r.Lost, r.Acquired, r.Acquired, r.Leases, r.Seconds)
		}
	}
	return ts
}
