package redlock

import (
	"sync"
	"time"
)

// workerIdle is how long an idle worker waits for a call before it exits.
const workerIdle = 10 * time.Second

// workers runs the node calls of rounds on goroutines that outlive a round,
// so that a goroutine's stack, once grown by the deep call chain of a Redis
// client, serves many calls: with a new goroutine per call, growing stacks
// took about a sixth of the client's CPU in a quorum acquire. A worker
// exits after workerIdle without work; close stops them all and waits.
type workers struct {
	jobs chan func() // unbuffered: a send succeeds only to an idle worker
	quit chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	closed bool
}

func newWorkers() *workers {
	return &workers{jobs: make(chan func()), quit: make(chan struct{})}
}

// do runs job on an idle worker, or on a new one if none is idle. After
// close it runs job in the caller.
func (w *workers) do(job func()) {
	select {
	case w.jobs <- job:
		return
	default:
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		job()
		return
	}
	w.wg.Add(1)
	w.mu.Unlock()
	go w.work(job)
}

func (w *workers) work(job func()) {
	defer w.wg.Done()
	job()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		select {
		case job := <-w.jobs:
			job()
			idle.Reset(workerIdle)
		case <-idle.C:
			return
		case <-w.quit:
			return
		}
	}
}

// close stops the workers once their current calls return.
func (w *workers) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.quit)
	}
	w.mu.Unlock()
	w.wg.Wait()
}
