// Command benchmarks measures dlock against peer Go Redis lock libraries and
// against the round-trip floor, on redis-server processes it starts itself
// on loopback ports.
//
//	cd benchmarks && go run . -out results.json
//
// The command is one program in several roles, chosen by -role:
//
//   - (none) the orchestrator: starts the servers pinned to CPU 0, runs the
//     client role once per CPU layout, prints the table, checks the targets
//     and writes JSON (and Markdown with -md);
//   - client: runs the scenarios against the servers, pinned by taskset
//     (CPU 1 for the "pinned" layout, CPU 0 for "same-core"), and writes
//     its measurements to a file;
//   - contender, holder, waiter: the separate OS processes of the handoff
//     and holder-killed scenarios, started by the client role from the
//     same binary.
//
// See README.md for the scenarios, the libraries' settings and how each
// figure is measured.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// config is everything the flags set. The orchestrator passes it on to the
// client role by re-running the binary with the same flags.
type config struct {
	role      string
	out       string
	md        string
	repeats   int
	dur       time.Duration
	pingN     int
	layouts   string
	scenarios string
	libs      string
	smoke     bool

	handoffDur   time.Duration
	handoffProcs int
	hold         time.Duration

	killedTTL    time.Duration
	killedTrials int

	renewDur    time.Duration
	renewLeases int
	renewTTL    time.Duration

	profile  string
	rerender string

	// client role
	addrs      string // comma-separated: main server, then the quorum nodes
	etcd       string // the etcd member's client URL ("" without etcd)
	etcdPID    int    // its process, whose CPU time the etcd pairs count
	layout     string
	resultFile string

	// child roles
	lib     string
	key     string
	shm     string
	id      int
	ttl     time.Duration
	killKey string
}

func parseFlags(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("benchmarks", flag.ContinueOnError)
	fs.StringVar(&c.role, "role", "", "internal: the role of this process (client, contender, holder, waiter)")
	fs.StringVar(&c.out, "out", "results.json", "write the results as JSON to this file")
	fs.StringVar(&c.md, "md", "", "also write the results as Markdown to this file")
	fs.IntVar(&c.repeats, "repeats", 5, "repeats of each measurement; tables show medians")
	fs.DurationVar(&c.dur, "dur", time.Second, "duration of one measured block of pairs")
	fs.IntVar(&c.pingN, "ping", 2000, "PINGs in each round-trip baseline block")
	fs.StringVar(&c.layouts, "layouts", "pinned,same-core", "CPU layouts to run: pinned (server CPU 0, client CPU 1), same-core (both on CPU 0)")
	fs.StringVar(&c.scenarios, "scenarios", "", "comma-separated scenario names to run (default all): "+strings.Join(scenarioNames(), ","))
	fs.StringVar(&c.libs, "libs", "", "comma-separated substrings; run only libraries whose name/config contains one")
	fs.BoolVar(&c.smoke, "smoke", false, "run every scenario once, briefly (for CI); the figures mean nothing")
	fs.DurationVar(&c.handoffDur, "handoff-dur", 3*time.Second, "duration of one handoff block")
	fs.IntVar(&c.handoffProcs, "handoff-procs", 8, "contender processes in the handoff scenario")
	fs.DurationVar(&c.hold, "hold", time.Millisecond, "how long a contender holds the lock")
	fs.DurationVar(&c.killedTTL, "killed-ttl", 500*time.Millisecond, "lock TTL in the holder-killed scenario")
	fs.IntVar(&c.killedTrials, "killed-trials", 7, "holder kills per library")
	fs.DurationVar(&c.renewDur, "renew-dur", 10*time.Second, "how long the renewal scenario holds its leases (the README reports 60s)")
	fs.IntVar(&c.renewLeases, "renew-leases", 10000, "leases held in the renewal scenario")
	fs.DurationVar(&c.renewTTL, "renew-ttl", 3*time.Second, "lease TTL in the renewal scenario (renewed every TTL/3)")
	fs.StringVar(&c.profile, "profile", "", "write CPU and allocation profiles of dlock's uncontended pair to PREFIX.cpu and PREFIX.alloc (client role, pinned layout)")
	fs.StringVar(&c.rerender, "rerender", "", "write the tables and targets again from this results JSON (with -out, -md), without measuring")
	fs.StringVar(&c.addrs, "addrs", "", "internal: server addresses")
	fs.StringVar(&c.etcd, "etcd", "", "internal: client URL of the etcd member")
	fs.IntVar(&c.etcdPID, "etcd-pid", 0, "internal: process id of the etcd member")
	fs.StringVar(&c.layout, "layout", "", "internal: the layout the client runs in")
	fs.StringVar(&c.resultFile, "result-file", "", "internal: where the client writes its results")
	fs.StringVar(&c.lib, "lib", "", "internal: library of a child process")
	fs.StringVar(&c.key, "key", "", "internal: lock key of a child process")
	fs.StringVar(&c.shm, "shm", "", "internal: shared-memory file of the handoff contenders")
	fs.IntVar(&c.id, "id", 0, "internal: contender number")
	fs.DurationVar(&c.ttl, "ttl", 0, "internal: lock TTL of a child process")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if c.smoke {
		c.repeats = 1
		c.dur = 50 * time.Millisecond
		c.pingN = 200
		c.handoffDur = 300 * time.Millisecond
		c.killedTrials = 1
		c.killedTTL = 200 * time.Millisecond
		c.renewDur = time.Second
		c.renewLeases = 1000
		c.renewTTL = 900 * time.Millisecond
	}
	if c.repeats < 1 {
		return nil, fmt.Errorf("-repeats must be at least 1")
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cfg.role {
	case "":
		if cfg.rerender != "" {
			err = rerender(cfg)
		} else {
			err = orchestrate(ctx, cfg)
		}
	case "client":
		err = runClient(ctx, cfg)
	case "contender":
		err = runContender(ctx, cfg)
	case "holder":
		err = runHolder(ctx, cfg)
	case "waiter":
		err = runWaiter(ctx, cfg)
	default:
		err = fmt.Errorf("unknown role %q", cfg.role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchmarks (%s): %v\n", roleName(cfg.role), err)
		os.Exit(1)
	}
}

func roleName(r string) string {
	if r == "" {
		return "orchestrator"
	}
	return r
}
