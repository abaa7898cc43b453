package main

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkOwnKeys is the pair-8/32/128 scenario in go test -bench form,
// for profiling one library at a time under concurrency:
//
//	taskset -c 1 go test -run XXX -cpu 1 -bench 'OwnKeys/g=8/dlock_\(defaults\)' -benchmem -cpuprofile cpu.out
//
// Each of g goroutines (b.SetParallelism with -cpu 1) runs pairs on a key
// of its own.
func BenchmarkOwnKeys(b *testing.B) {
	ctx := context.Background()
	for _, g := range []int{8, 32, 128} {
		for _, s := range singleNode() {
			b.Run("g="+strconv.Itoa(g)+"/"+benchName(s), func(b *testing.B) {
				l, err := s.open(benchEnv)
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				prefix := "bench:owned:" + benchName(s) + ":"
				var next atomic.Int64
				b.ReportAllocs()
				b.SetParallelism(g)
				srv0, cli0 := serverCPU(), cpuTime()
				b.RunParallel(func(pb *testing.PB) {
					key := prefix + strconv.FormatInt(next.Add(1), 10)
					for pb.Next() {
						h, err := l.TryLock(ctx, key)
						if err != nil {
							b.Error(err)
							return
						}
						if err := h.Release(ctx); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(serverCPU()-srv0)/float64(b.N), "server-cpu-ns/op")
				b.ReportMetric(float64(cpuTime()-cli0)/float64(b.N), "client-cpu-ns/op")
			})
		}
	}
}
