package redlock

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
)

// MinNodes is the smallest number of nodes [New] accepts: with fewer, a
// single failed node would stop every lock (with 2) or the quorum would be
// one node (with 1).
const MinNodes = 3

// node is one member of the quorum, with its optional capabilities.
type node struct {
	d       driver.Locker
	name    string             // "node 2" or "node 2 (10.0.0.3:6379)", for errors
	raiser  driver.FenceRaiser // nil if unsupported
	floor   FloorAcquirer      // nil if unsupported
	notify  driver.Notifier    // nil if unsupported
	inspect driver.Inspector   // nil if unsupported
}

// locker is the quorum driver. It is safe for concurrent use; it keeps no
// per-key state, so every call stands alone, as the driver contract asks.
type locker struct {
	nodes  []node
	all    []int // 0..len(nodes)-1
	quorum int
	cfg    config

	closers []func() error // run after the nodes are closed: clients a URL opened

	notifiers, inspectors int // nodes that can notify, inspect

	closeOnce sync.Once
	closeErr  error
	// stop ends, at Close, the node calls still running: late answers
	// and background releases on a slow or dead node, which Close would
	// otherwise wait for.
	stop    context.Context
	stopNow context.CancelFunc

	floor   atomic.Uint64 // the last fence floor proposed, see propose
	workers *workers      // run the node calls of rounds
	bg      background    // node calls that may outlive their caller

	mu     sync.Mutex
	queues map[string]*tokenCalls // by token: its acquires and releases in flight, see tokenCalls
	unsure unsureReleases         // by token: nodes where a release of it may still land
	late   lateReleases           // by key: releases running after their Release returned

	// testHookQueued, if set, runs once node's call of token is
	// queued, before the call starts (see queueRound).
	testHookQueued func(token string, node int)
}

// The capabilities. Go cannot implement an interface conditionally, so
// the driver implements Notifier and Inspector always, and answers
// errors.ErrUnsupported, by the driver package's rule for wrapping
// drivers, when fewer than a majority of nodes have the capability: fewer
// could never give a majority answer.
var (
	_ driver.Locker         = (*locker)(nil)
	_ driver.BatchRefresher = (*locker)(nil)
	_ driver.Notifier       = (*locker)(nil)
	_ driver.Inspector      = (*locker)(nil)
)

// lacks returns an error wrapping errors.ErrUnsupported if only have
// nodes can do what, fewer than a majority, or nil.
func (l *locker) lacks(what string, have int) error {
	if have >= l.quorum {
		return nil
	}
	return fmt.Errorf("redlock: only %d of %d nodes can %s, and a majority is %d: %w", have, len(l.nodes), what, l.quorum, errors.ErrUnsupported)
}

// New returns a [dlock.Locker] that holds a lock when a majority of nodes
// grant it: [NewDriver]'s driver, with opts.Lock for the Locker's lease
// defaults. opts may be nil for the defaults. Closing the Locker closes
// the nodes. Its errors are NewDriver's, and wrap dlock.ErrInvalid.
func New(nodes []driver.Locker, opts *Options) (*dlock.Locker, error) {
	d, err := NewDriver(nodes, opts)
	if err != nil {
		return nil, err
	}
	var lock *dlock.Options
	if opts != nil {
		lock = opts.Lock
	}
	return dlock.New(d, lock), nil
}

// NewDriver returns the driver that [New] wraps: it holds a lock when a
// majority of nodes grant it.
// The nodes must be independent masters, not replicas of one another nor
// shards of one cluster (see the package documentation); there must be at
// least [MinNodes], and with fencing on every node must implement
// driver.FenceRaiser and honour proposed fence floors
// ([FloorAcquirer]). opts may be nil for the defaults.
//
// The driver is safe for concurrent use, and owns the nodes: its Close
// closes them. Applications use [New]; NewDriver is for wrapping the
// driver (a fault injector, a test spy) before dlock.New. It implements
// driver.BatchRefresher, [FloorAcquirer], driver.Notifier and
// driver.Inspector; by the driver package's rule for wrapping drivers, the
// last two answer an error wrapping errors.ErrUnsupported unless a
// majority of the nodes have them, and AcquireFloor does unless fencing
// is on. Errors wrap dlock.ErrInvalid.
func NewDriver(nodes []driver.Locker, opts *Options) (driver.Locker, error) {
	l, err := newLocker(nodes, nil, opts)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// newLocker checks nodes and options. addrs, if not nil, names the nodes
// in errors.
func newLocker(ds []driver.Locker, addrs []string, opts *Options) (*locker, error) {
	cfg, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	if len(ds) < MinNodes {
		return nil, fmt.Errorf("%w: redlock: a quorum needs at least %d independent nodes, got %d", driver.ErrInvalid, MinNodes, len(ds))
	}
	// Enough idle workers for a round and the late answers of the last.
	l := &locker{cfg: cfg, quorum: len(ds)/2 + 1, workers: newWorkers(2 * len(ds)), queues: make(map[string]*tokenCalls)}
	l.stop, l.stopNow = context.WithCancel(context.Background())
	for i, d := range ds {
		name := fmt.Sprintf("node %d", i)
		if i < len(addrs) {
			name = fmt.Sprintf("node %d (%s)", i, addrs[i])
		}
		if d == nil {
			return nil, fmt.Errorf("%w: redlock: %s is nil", driver.ErrInvalid, name)
		}
		for j := range i {
			if same(ds[j], d) {
				return nil, fmt.Errorf("%w: redlock: nodes %d and %d are the same driver; a quorum needs independent nodes", driver.ErrInvalid, j, i)
			}
		}
		n := node{d: d, name: name}
		n.raiser, _ = d.(driver.FenceRaiser)
		n.notify, _ = d.(driver.Notifier)
		n.inspect, _ = d.(driver.Inspector)
		if cfg.fencing && n.raiser == nil {
			return nil, fmt.Errorf("%w: redlock: %s (%T) cannot raise fences (driver.FenceRaiser), which fencing needs; set Options.DisableFencing if nothing uses fences",
				driver.ErrInvalid, name, d)
		}
		n.floor, _ = d.(FloorAcquirer)
		if cfg.fencing && n.floor == nil {
			return nil, fmt.Errorf("%w: redlock: %s (%T) does not honour proposed fence floors (redlock.FloorAcquirer), which fencing needs to grant one fence on a majority in one round; set Options.DisableFencing if nothing uses fences",
				driver.ErrInvalid, name, d)
		}
		if n.notify != nil {
			l.notifiers++
		}
		if n.inspect != nil {
			l.inspectors++
		}
		l.nodes = append(l.nodes, n)
		l.all = append(l.all, i)
	}
	return l, nil
}

// same reports whether a and b are the same driver value.
func same(a, b any) (eq bool) {
	defer func() {
		if recover() != nil { // a comparable type holding an uncomparable value
			eq = false
		}
	}()
	t := reflect.TypeOf(a)
	return t == reflect.TypeOf(b) && t.Comparable() && a == b
}

// Close closes every node, and then the clients a URL opened. First it
// lets the node calls that outlived their callers finish (the answers
// after a quorum decided, the undo of failed acquires, the releases of
// late grants), for at most the node timeout of the Locker's TTL; then it
// ends those still running and waits for them. It cancels their
// contexts, and closes the nodes and clients before it waits, because a
// go-redis call blocked in a read sees only its context's deadline, not
// its cancellation, and ends at once when its connection closes: on the
// nodes of a URL, a hung node holds Close for that node timeout at most.
// The clients given to [NewRedis] stay open, being the caller's: a call
// blocked in a read on one ends at its own deadline, the client's
// ReadTimeout or, for an acquire, which listens for its answer for the
// validity window, the window's end, whichever is first; Close waits for
// it. A release it ends leaves that node's lock to expire with its TTL.
func (l *locker) Close() error {
	l.closeOnce.Do(func() {
		l.bg.wait(l.cfg.timeoutFor(l.cfg.lockTTL))
		l.stopNow()
		defer l.workers.close()
		var errs []error
		for _, n := range l.nodes {
			if err := n.d.Close(); err != nil {
				errs = append(errs, n.err(err))
			}
		}
		for _, c := range l.closers {
			errs = append(errs, c())
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}
