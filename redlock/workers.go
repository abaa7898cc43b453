package redlock

import (
	"sync"
	"sync/atomic"
	"time"
)

// workerIdle is how long an idle worker waits for a call before it exits.
const workerIdle = 10 * time.Second

// workers runs the node calls of rounds on goroutines that outlive a round,
// so that a goroutine's stack, once grown by the deep call chain of a Redis
// client, serves many calls: with a new goroutine per call, growing stacks
// took about a sixth of the client's CPU in a quorum acquire. At most
// maxIdle workers wait for work, each for workerIdle at most, so a burst
// of calls leaves no crowd behind; close stops them all and waits.
type workers struct {
	jobs    chan func() // unbuffered: a send succeeds only to an idle worker
	quit    chan struct{}
	wg      sync.WaitGroup
	idle    atomic.Int32
	maxIdle int32

	mu     sync.Mutex
	closed bool
}

func newWorkers(maxIdle int) *workers {
	return &workers{jobs: make(chan func()), quit: make(chan struct{}), maxIdle: int32(maxIdle)}
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
	var idle *time.Timer
	for {
		if w.idle.Add(1) > w.maxIdle {
			w.idle.Add(-1)
			return
		}
		if idle == nil {
			idle = time.NewTimer(workerIdle)
			defer idle.Stop()
		} else {
			idle.Reset(workerIdle)
		}
		select {
		case job := <-w.jobs:
			w.idle.Add(-1)
			job()
		case <-idle.C:
			w.idle.Add(-1)
			return
		case <-w.quit:
			w.idle.Add(-1)
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
