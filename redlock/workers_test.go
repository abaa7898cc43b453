package redlock

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestWorkersConcurrent: calls never wait for one another: with every
// worker busy, another call gets a worker of its own.
func TestWorkersConcurrent(t *testing.T) {
	w := newWorkers()
	defer w.close()
	const n = 5
	var arrived sync.WaitGroup
	arrived.Add(n)
	var done sync.WaitGroup
	done.Add(n)
	for range n {
		w.do(func() {
			defer done.Done()
			arrived.Done()
			arrived.Wait() // returns only once all n run at the same time
		})
	}
	done.Wait()
}

// TestWorkersExit: an idle worker exits on its own after workerIdle, so a
// driver nobody closes keeps no goroutine (the bubble ends only when every
// goroutine in it has); after close, do runs the call itself.
func TestWorkersExit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorkers()
		for range 3 {
			ran := make(chan struct{})
			w.do(func() { close(ran) })
			<-ran
			synctest.Wait() // the worker is idle again and is reused
		}
		time.Sleep(workerIdle + time.Second)
		synctest.Wait()
	})
	w := newWorkers()
	w.do(func() {})
	w.close()
	ran := false
	w.do(func() { ran = true })
	if !ran {
		t.Error("do after close did not run the call before returning")
	}
}
