package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// The go test -bench form of the uncontended pair, for profiling one
// library at a time:
//
//	go test -run XXX -bench 'Pair/dlock_\(best\)' -benchmem -cpuprofile cpu.out -memprofile mem.out
//
// TestMain starts the servers (unpinned; pin the whole command with taskset
// if wanted). The main runner (go run .) is what produces the tables.

var benchEnv env

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dlock-bench-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	servers, err := startServers(context.Background(), 6, -1, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "skipping benchmarks:", err)
		os.RemoveAll(dir)
		os.Exit(0)
	}
	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, s.addr)
	}
	benchEnv = env{main: addrs[0], nodes: addrs[1:]}
	for _, s := range servers {
		serverPIDs = append(serverPIDs, s.cmd.Process.Pid)
	}
	code := m.Run()
	stopServers(servers)
	os.RemoveAll(dir)
	os.Exit(code)
}

func benchName(s libSpec) string {
	return strings.ReplaceAll(s.label(), " ", "_")
}

func benchPairs(b *testing.B, specs []libSpec) {
	ctx := context.Background()
	for _, s := range specs {
		b.Run(benchName(s), func(b *testing.B) {
			l, err := s.open(benchEnv)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			prefix := "bench:" + strconv.Itoa(os.Getpid()) + ":" + benchName(s) + ":"
			for i := range 100 { // warm up: connections, scripts
				h, err := l.TryLock(ctx, prefix+"warm"+strconv.Itoa(i))
				if err != nil {
					b.Fatal(err)
				}
				h.Release(ctx)
			}
			b.ReportAllocs()
			srv0, cli0 := serverCPU(), cpuTime()
			i := 0
			for b.Loop() {
				i++
				h, err := l.TryLock(ctx, prefix+strconv.Itoa(i))
				if err != nil {
					b.Fatal(err)
				}
				if err := h.Release(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(serverCPU()-srv0)/float64(i), "server-cpu-ns/op")
			b.ReportMetric(float64(cpuTime()-cli0)/float64(i), "client-cpu-ns/op")
		})
	}
}

// BenchmarkPair: try-acquire+release on a new key each time, one node.
func BenchmarkPair(b *testing.B) { benchPairs(b, singleNode()) }

// BenchmarkQuorumPair: the same over 3 and 5 nodes.
func BenchmarkQuorumPair(b *testing.B) { benchPairs(b, append(quorum(3), quorum(5)...)) }

// TestSmoke runs every scenario once, briefly, through the real command
// path (client role in this process, children from the test binary is not
// possible), so the pair scenarios at least cannot rot under go test.
func TestPairsOnce(t *testing.T) {
	ctx := context.Background()
	for _, s := range append(singleNode(), quorum(3)...) {
		l, err := s.open(benchEnv)
		if err != nil {
			t.Fatalf("%s: %v", s.label(), err)
		}
		h, err := l.TryLock(ctx, "test:"+benchName(s))
		if err != nil {
			t.Fatalf("%s: try: %v", s.label(), err)
		}
		if _, err := l.TryLock(ctx, "test:"+benchName(s)); err != errBusy {
			t.Errorf("%s: second try: %v, want errBusy", s.label(), err)
		}
		if err := h.Release(ctx); err != nil {
			t.Errorf("%s: release: %v", s.label(), err)
		}
		l.Close()
	}
}
