package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// orchestrate starts the servers, runs the client role in each layout,
// then reports.
func orchestrate(ctx context.Context, cfg *config) error {
	started := time.Now()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "dlock-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// Server 0 serves the single-node scenarios, 1..5 are the quorum nodes.
	servers, err := startServers(ctx, 6, 0, dir)
	if err != nil {
		return err
	}
	defer stopServers(servers)
	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, s.addr)
	}
	etcd, err := startEtcd(ctx, cfg)
	if err != nil {
		return err
	}
	var etcdArgs []string
	if etcd != nil {
		defer etcd.Stop()
		m := etcd.Members()[0]
		etcdArgs = []string{"-etcd", m.ClientURL, "-etcd-pid", strconv.Itoa(m.Pid())}
	}
	res := &Results{
		Command: "go run . " + strings.Join(os.Args[1:], " "),
		Started: started.UTC(),
		Machine: describeMachine(),
		Settings: map[string]any{
			"repeats": cfg.repeats, "pair_block": cfg.dur.String(), "pings_per_block": cfg.pingN,
			"handoff_block": cfg.handoffDur.String(), "handoff_processes": cfg.handoffProcs, "hold": cfg.hold.String(),
			"killed_ttl": cfg.killedTTL.String(), "killed_trials": cfg.killedTrials,
			"renewal_duration": cfg.renewDur.String(), "renewal_leases": cfg.renewLeases, "renewal_ttl": cfg.renewTTL.String(),
			"smoke": cfg.smoke, "etcd_members": 1,
		},
	}
	res.Libs = append(append(singleNode(), append(quorum(3), quorum(5)...)...), etcdLibs()...)
	if l, _, _ := strings.Cut(res.Machine.LoadStart, " "); !cfg.smoke && parseFloat(l) > 0.5 {
		fmt.Fprintf(os.Stderr, "warning: load average %s: other work on this machine will skew the figures\n", res.Machine.LoadStart)
	}
	res.Command = strings.TrimSpace(res.Command)

	for _, layout := range strings.Split(cfg.layouts, ",") {
		if ctx.Err() != nil {
			break
		}
		clientCPU := -1
		serverCPU := "0"
		switch {
		case !pinning():
			layout, serverCPU = "unpinned", "any"
		case layout == "pinned":
			clientCPU = 1
		case layout == "same-core":
			clientCPU = 0
		default:
			return fmt.Errorf("unknown layout %q", layout)
		}
		file := filepath.Join(dir, "client-"+layout+".json")
		args := slices.Clone(os.Args[1:])
		args = append(args, "-role", "client", "-layout", layout, "-addrs", strings.Join(addrs, ","), "-result-file", file)
		args = append(args, etcdArgs...)
		if layout != "pinned" && layout != "unpinned" {
			args = append(args, "-profile", "")
		}
		cmd := pinned(ctx, clientCPU, exe, args...)
		cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
		if clientCPU < 0 {
			cmd.Env = os.Environ()
		}
		cmd.Stdout = os.Stderr
		cmd.Stderr = os.Stderr
		fmt.Fprintf(os.Stderr, "== layout %s: servers on CPU %s, client on CPU %d\n", layout, serverCPU, clientCPU)
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("client (%s): %w", layout, err)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		lr := &LayoutResult{}
		if err := json.Unmarshal(b, lr); err != nil {
			return err
		}
		lr.ServerCPU = serverCPU
		res.Layouts = append(res.Layouts, lr)
		if layout == "unpinned" {
			break
		}
	}
	res.Took = time.Since(started).Round(time.Second).String()
	res.Machine.LoadEnd = loadavg()
	return report(cfg, res)
}

// rerender reads the results of an earlier run from cfg.rerender and
// writes its tables and targets again (-out, -md), without measuring: for
// a change of the report's layout.
func rerender(cfg *config) error {
	b, err := os.ReadFile(cfg.rerender)
	if err != nil {
		return err
	}
	res := &Results{}
	if err := json.Unmarshal(b, res); err != nil {
		return err
	}
	return report(cfg, res)
}

// report checks the targets, prints the tables and writes the files.
func report(cfg *config, res *Results) error {
	res.Targets = checkTargets(res)
	printText(os.Stdout, res)
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if cfg.md != "" {
		var sb strings.Builder
		printMarkdown(&sb, res)
		if err := os.WriteFile(cfg.md, []byte(sb.String()), 0o644); err != nil {
			return err
		}
	}
	// Scenario errors fail the command (CI's smoke run relies on it);
	// missed targets do not: they are results.
	n := 0
	for _, lr := range res.Layouts {
		n += len(lr.Errors)
	}
	if n > 0 {
		return fmt.Errorf("%d scenario errors (see above)", n)
	}
	return nil
}

func parseFloat(s string) float64 {
	f, _ := strconv.ParseFloat(s, 64)
	return f
}
