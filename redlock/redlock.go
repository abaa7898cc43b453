package redlock

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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
	notify  driver.Notifier
	inspect driver.Inspector
}

// locker is the quorum driver. It is safe for concurrent use; it keeps no
// per-key state, so every call stands alone, as the driver contract asks.
type locker struct {
	nodes   []node
	all     []int // 0..len(nodes)-1
	quorum  int
	cfg     config
	closers []func() error // run after the nodes are closed: clients a URL opened

	closeOnce sync.Once
	closeErr  error

	floor   atomic.Uint64 // the last fence floor proposed, see propose
	workers *workers      // run the node calls of rounds
	pending sync.Map      // token → *lateGrant, done when its late grants are in; see lateGrants
}

// The capabilities are declared by the types New returns: a Notifier or an
// Inspector only if a majority of nodes has the capability, since fewer
// could never give a majority answer.
type (
	notifyingLocker  struct{ *locker }
	inspectingLocker struct{ *locker }
	fullLocker       struct{ *locker }
)

var (
	_ driver.Locker         = (*locker)(nil)
	_ driver.BatchRefresher = (*locker)(nil)
	_ driver.Notifier       = notifyingLocker{}
	_ driver.Inspector      = inspectingLocker{}
	_ driver.Notifier       = fullLocker{}
	_ driver.Inspector      = fullLocker{}
)

func (l notifyingLocker) Subscribe(ctx context.Context, key, _ string) (<-chan struct{}, func(), error) {
	return l.subscribe(ctx, key)
}

func (l inspectingLocker) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	return l.inspectKey(ctx, key)
}

func (l fullLocker) Subscribe(ctx context.Context, key, _ string) (<-chan struct{}, func(), error) {
	return l.subscribe(ctx, key)
}

func (l fullLocker) Inspect(ctx context.Context, key string) (driver.Holder, bool, error) {
	return l.inspectKey(ctx, key)
}

// New returns a driver that holds a lock when a majority of nodes grant it.
// The nodes must be independent masters, not replicas of one another nor
// shards of one cluster (see the package documentation); there must be at
// least [MinNodes], and with fencing on every node must implement
// driver.FenceRaiser. opts may be nil for the defaults.
//
// The driver is safe for concurrent use, and owns the nodes: its Close
// closes them. Wrap it with dlock.New to use it. It implements driver.BatchRefresher always, and
// driver.Notifier and driver.Inspector when a majority of the nodes do.
// Errors wrap dlock.ErrInvalid.
func New(nodes []driver.Locker, opts *Options) (driver.Locker, error) {
	l, err := newLocker(nodes, nil, opts)
	if err != nil {
		return nil, err
	}
	return l.withCapabilities(), nil
}

// newLocker checks nodes and options. addrs, if not nil, names the nodes
// in errors.
func newLocker(ds []driver.Locker, addrs []string, opts *Options) (*locker, error) {
	cfg, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	if len(ds) < MinNodes {
		return nil, fmt.Errorf("%w: redlock: a quorum needs at least %d independent nodes, got %d", dlock.ErrInvalid, MinNodes, len(ds))
	}
	// Enough idle workers for a round and the late answers of the last.
	l := &locker{cfg: cfg, quorum: len(ds)/2 + 1, workers: newWorkers(2 * len(ds))}
	for i, d := range ds {
		name := fmt.Sprintf("node %d", i)
		if i < len(addrs) {
			name = fmt.Sprintf("node %d (%s)", i, addrs[i])
		}
		if d == nil {
			return nil, fmt.Errorf("%w: redlock: %s is nil", dlock.ErrInvalid, name)
		}
		for j := range i {
			if same(ds[j], d) {
				return nil, fmt.Errorf("%w: redlock: nodes %d and %d are the same driver; a quorum needs independent nodes", dlock.ErrInvalid, j, i)
			}
		}
		n := node{d: d, name: name}
		n.raiser, _ = d.(driver.FenceRaiser)
		n.notify, _ = d.(driver.Notifier)
		n.inspect, _ = d.(driver.Inspector)
		if cfg.fencing && n.raiser == nil {
			return nil, fmt.Errorf("%w: redlock: %s (%T) cannot raise fences (driver.FenceRaiser), which fencing needs; set Options.DisableFencing if nothing uses fences",
				dlock.ErrInvalid, name, d)
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

func (l *locker) withCapabilities() driver.Locker {
	notify, inspect := 0, 0
	for _, n := range l.nodes {
		if n.notify != nil {
			notify++
		}
		if n.inspect != nil {
			inspect++
		}
	}
	switch {
	case notify >= l.quorum && inspect >= l.quorum:
		return fullLocker{l}
	case notify >= l.quorum:
		return notifyingLocker{l}
	case inspect >= l.quorum:
		return inspectingLocker{l}
	}
	return l
}

// round calls fn for the nodes in idx in parallel, each with a context
// bounded by timeout, and returns when every call has returned. Nodes that
// ignore their context delay it.
func (l *locker) round(ctx context.Context, idx []int, timeout time.Duration, fn func(ctx context.Context, i int)) {
	l.ask(ctx, idx, timeout, func(ctx context.Context, i int) (driver.Result, error) {
		fn(ctx, i)
		return driver.Result{}, nil
	}, func(int, driver.Result, error) bool { return false }, nil)
}

// answer is one node's reply in a round.
type answer struct {
	i   int
	res driver.Result
	err error
}

// ask calls call for the nodes in idx in parallel, each with a context
// bounded by timeout, and hands each answer to take, in the caller's
// goroutine, as it arrives. It returns once every node answered, or as
// soon as take returns true: the calls still running then finish on the
// workers (which Close waits for), and their answers are dropped unless
// the caller calls rest, which waits for them and hands them to take too.
// done, if not nil, runs once every call has returned. Nodes that ignore
// their context delay it.
func (l *locker) ask(ctx context.Context, idx []int, timeout time.Duration,
	call func(ctx context.Context, i int) (driver.Result, error), take func(i int, res driver.Result, err error) bool,
	done func()) (rest func()) {
	if len(idx) == 0 {
		return func() {}
	}
	// The calls start together, so one deadline serves them all; the last
	// to return ends it.
	ctx, cancel := context.WithTimeout(ctx, timeout)
	var left atomic.Int32
	left.Store(int32(len(idx)))
	returned := func() {
		if left.Add(-1) == 0 {
			cancel()
			if done != nil {
				done()
			}
		}
	}
	answers := make(chan answer, len(idx)) // never blocks a late call
	for _, i := range idx {
		l.workers.do(func() {
			defer returned()
			res, err := call(ctx, i)
			answers <- answer{i, res, err}
		})
	}
	received := 0
	for received < len(idx) {
		a := <-answers
		received++
		if take(a.i, a.res, a.err) {
			break
		}
	}
	return func() {
		for ; received < len(idx); received++ {
			a := <-answers
			take(a.i, a.res, a.err)
		}
	}
}

// window returns the validity window of a call with ttl (the time within
// which a majority must confirm) and its per-node timeout.
func (l *locker) window(ttl time.Duration) (window, timeout time.Duration, err error) {
	drift := l.cfg.driftFor(ttl)
	window = ttl - drift
	if window <= 0 {
		return 0, 0, fmt.Errorf("%w: redlock: drift %v leaves nothing of TTL %v", dlock.ErrInvalid, drift, ttl)
	}
	return window, min(l.cfg.timeoutFor(ttl), window), nil
}

// Acquire asks every node in parallel. The lock is granted when a majority
// granted it within the validity window; it returns then, without waiting
// for the other nodes. With fencing, every node is asked
// for the same fence (see propose); if fewer than a majority granted the
// largest fence among them, it is written back to a majority before it is
// returned. Without fencing, the nodes are told to skip fences. When the
// attempt fails, every node that granted it, or whose answer is unknown, is
// released before Acquire returns.
func (l *locker) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	if err := checkToken(req.Token); err != nil {
		return driver.Result{}, err
	}
	window, timeout, err := l.window(req.TTL)
	if err != nil {
		return driver.Result{}, err
	}
	start := time.Now()
	// Nodes do not queue waiters: their queues could pick different
	// waiters, none of which would then be woken on a majority.
	req.Wait = 0
	if l.cfg.fencing {
		req.FenceFloor = l.propose(req.FenceFloor, start, timeout)
	} else {
		req.NoFence = true
	}
	n := len(l.nodes)
	res := make([]driver.Result, n)
	errs := make([]error, n)
	var got []int
	busy := 0
	// A majority of grants decides the round: the other nodes' answers
	// cannot change it, so they are not awaited (a late grant holds a
	// minority node for this token, which Release frees). A failure waits
	// for every answer, to release what the late ones granted.
	all := &lateGrant{done: make(chan struct{}), timeout: timeout} // done once every node answered
	rest := l.ask(ctx, l.all, timeout, func(ctx context.Context, i int) (driver.Result, error) {
		return l.nodes[i].d.Acquire(ctx, req)
	}, func(i int, r driver.Result, err error) bool {
		res[i], errs[i] = r, err
		switch {
		case err != nil:
		case r.Acquired:
			got = append(got, i)
		default:
			busy++
		}
		return len(got) >= l.quorum && (!l.cfg.fencing || agreed(got, res, l.quorum) != 0)
	}, func() {
		close(all.done)
		l.pending.CompareAndDelete(req.Token, all)
	})
	if len(got) >= l.quorum {
		var fence uint64
		fence, err = l.fence(ctx, req, got, res, start, window, timeout)
		if err == nil {
			l.lateGrants(req.Token, all)
			return driver.Result{Acquired: true, Fence: fence}, nil
		}
		rest() // every answer, so that late grants are released too
	}
	l.abandon(ctx, req, got, errs, timeout)
	switch {
	case err != nil:
		return driver.Result{}, err
	case len(got)+busy >= l.quorum:
		// A majority answered, and not all for us: the key is busy.
		return driver.Result{HolderTTL: l.holderHint(res, errs, time.Since(start))}, nil
	}
	for i := range n {
		if errs[i] == nil && !res[i].Acquired {
			errs[i] = errBusy
		}
	}
	qe := l.quorumError("acquire", req.Key, len(got), errs, nil)
	qe.undone = true // by abandon, above
	return driver.Result{}, qe
}

var errBusy = errors.New("held by another token")

// checkToken refuses an empty token before any I/O: with it anyone could
// refresh or release a lock taken with "".
func checkToken(token string) error {
	if token == "" {
		return fmt.Errorf("%w: redlock: empty token", dlock.ErrInvalid)
	}
	return nil
}

// lateGrant is an acquire whose round went on after Acquire returned.
type lateGrant struct {
	done    chan struct{} // closed once every node answered
	timeout time.Duration // the round's node timeout, which bounds its calls
}

// lateGrants records that the acquire of token returned before every node
// answered; all.done closes when they have. Release waits for it: a
// release that overtook a late grant on its node would leave that node
// locked until the TTL.
func (l *locker) lateGrants(token string, all *lateGrant) {
	l.pending.Store(token, all)
	select {
	case <-all.done: // answered meanwhile, maybe before the Store: forget it
		l.pending.CompareAndDelete(token, all)
	default: // the last answer forgets it
	}
}

// agreed returns the largest fence granted by a majority of the nodes in
// got, or 0 if there is none. Such a fence exceeds every fence granted
// before (each of those is on a majority, which shares a node with this
// one), so it needs no raising: the common case, where every node grants
// the proposed floor, and a repeated request of a holder whose grants
// were the same fence.
func agreed(got []int, res []driver.Result, quorum int) uint64 {
	var best uint64
	for _, i := range got {
		f, n := res[i].Fence, 0
		for _, j := range got {
			if res[j].Fence == f {
				n++
			}
		}
		if n >= quorum && f > best {
			best = f
		}
	}
	return best
}

// propose returns the fence floor of an attempt started at now with
// per-node timeout lead: the caller's floor if it set one, else this
// client's clock in microseconds plus lead, kept increasing across its
// attempts. A node grants the largest of the floor, its own clock and one
// more than its last fence (the floor capped at its clock plus the TTL;
// see redisdriver's Fences): the request reaches every node within lead,
// so a node whose clock agrees with this client's finds its clock below
// the floor, and every node grants the same fence, unless one has already
// granted a larger one (another client's clock runs ahead). The
// write-back round of [locker.fence] is then rarely needed.
func (l *locker) propose(floor uint64, now time.Time, lead time.Duration) uint64 {
	if floor != 0 {
		return floor
	}
	for {
		last := l.floor.Load()
		f := max(uint64(now.Add(lead).UnixMicro()), last+1)
		if l.floor.CompareAndSwap(last, f) {
			return f
		}
	}
}

// fence returns the fence of a lease granted by the nodes in got: the
// largest of their fences, once a majority of nodes is known to grant only
// larger ones later. Nodes that granted that fence themselves do; the
// others are raised to it.
func (l *locker) fence(ctx context.Context, req driver.Request, got []int, res []driver.Result, start time.Time, window, timeout time.Duration) (uint64, error) {
	if took := time.Since(start); took >= window {
		return 0, validityError("acquire", req.Key, took, window)
	}
	if !l.cfg.fencing {
		return 0, nil
	}
	if f := agreed(got, res, l.quorum); f != 0 {
		return f, nil
	}
	var f uint64
	for _, i := range got {
		f = max(f, res[i].Fence)
	}
	have := 0
	var raise []int
	for _, i := range got {
		if res[i].Fence == f {
			have++
		} else {
			raise = append(raise, i)
		}
	}
	if have >= l.quorum {
		return f, nil
	}
	errs := make([]error, len(l.nodes))
	l.round(ctx, raise, min(timeout, window-time.Since(start)), func(ctx context.Context, i int) {
		errs[i] = l.nodes[i].raiser.RaiseFence(ctx, req.Key, req.Token, f)
	})
	for _, i := range raise {
		if errs[i] == nil {
			have++
		}
	}
	if have < l.quorum {
		return 0, l.quorumError("raise the fence of", req.Key, have, errs, nil)
	}
	if took := time.Since(start); took >= window {
		return 0, validityError("acquire", req.Key, took, window)
	}
	return f, nil
}

// abandon releases what a failed acquire may hold: the nodes that granted
// it, and those whose answer is unknown because their request may have
// landed. Nodes that answered busy or unavailable surely do not hold it.
// An unknown node failed to answer once already, so its release gets a
// quarter of the node timeout: a failed acquire should not take twice the
// node timeout. Release errors are dropped; those locks expire with the TTL.
func (l *locker) abandon(ctx context.Context, req driver.Request, got []int, errs []error, timeout time.Duration) {
	ctx = context.WithoutCancel(ctx)
	short := max(timeout/4, time.Millisecond)
	var wg sync.WaitGroup
	for i, n := range l.nodes {
		t := timeout
		switch {
		case slices.Contains(got, i):
		case errs[i] != nil && !errors.Is(errs[i], driver.ErrUnavailable):
			t = short
		default:
			continue
		}
		wg.Add(1)
		l.workers.do(func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, t)
			defer cancel()
			n.d.Release(rctx, req.Key, req.Token)
		})
	}
	wg.Wait()
}

// holderHint returns when a majority of nodes may be free, judging by a
// busy attempt's answers: a node that granted the attempt is free now, a
// busy node when its holder's TTL ends, a failed node never. The
// majority-th smallest of those times is when the next attempt may succeed;
// zero if unknown.
func (l *locker) holderHint(res []driver.Result, errs []error, took time.Duration) time.Duration {
	const never = time.Duration(math.MaxInt64)
	free := make([]time.Duration, len(l.nodes))
	for i := range free {
		switch {
		case errs[i] != nil:
			free[i] = never
		case res[i].Acquired:
			free[i] = 0
		case res[i].HolderTTL > 0:
			free[i] = res[i].HolderTTL
		default:
			free[i] = never
		}
	}
	slices.Sort(free)
	h := free[l.quorum-1]
	if h == never {
		return 0
	}
	// The hints were taken during the round; count from its start, so a
	// waiter wakes no later than the holder's expiry.
	return max(h-took, time.Millisecond)
}

// quorumError builds the error of an operation that got only got nodes.
// errs has one element per node, nil for those that succeeded. Errors for
// which text is true are kept as text only.
func (l *locker) quorumError(op, key string, got int, errs []error, text func(error) bool) *QuorumError {
	e := &QuorumError{Got: got, Need: l.quorum, op: op, key: key, nodes: len(l.nodes)}
	for i, err := range errs {
		switch {
		case err == nil:
		case text != nil && text(err):
			e.Errs = append(e.Errs, l.nodes[i].errText(err))
		default:
			e.Errs = append(e.Errs, l.nodes[i].err(err))
		}
	}
	return e
}

func isNotHeld(err error) bool { return errors.Is(err, driver.ErrNotHeld) }

// Refresh refreshes every node in parallel. It succeeds when a majority
// confirmed within the validity window, counted from the call. It returns
// an error wrapping ErrNotHeld when too many nodes no longer hold the lock
// for a majority to hold it; other failures are transient.
func (l *locker) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	if err := checkToken(token); err != nil {
		return err
	}
	window, timeout, err := l.window(ttl)
	if err != nil {
		return err
	}
	start := time.Now()
	errs := make([]error, len(l.nodes))
	took := make([]time.Duration, len(l.nodes))
	l.round(ctx, l.all, timeout, func(ctx context.Context, i int) {
		errs[i] = l.nodes[i].d.Refresh(ctx, key, token, ttl)
		took[i] = time.Since(start)
	})
	return l.refreshResult(key, errs, took, window)
}

// refreshResult judges one key's refresh from the nodes' answers and the
// time each took. The refresh holds if a majority confirmed within the
// window: then that majority keeps the lock for at least the TTL from the
// call, whatever the other nodes did.
func (l *locker) refreshResult(key string, errs []error, took []time.Duration, window time.Duration) error {
	ok, notHeld := 0, 0
	var confirmed []time.Duration
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
			confirmed = append(confirmed, took[i])
		case isNotHeld(err):
			notHeld++
		}
	}
	if ok >= l.quorum {
		slices.Sort(confirmed)
		if t := confirmed[l.quorum-1]; t >= window {
			return validityError("refresh", key, t, window)
		}
		return nil
	}
	if notHeld > len(l.nodes)-l.quorum {
		// No majority holds it any more: the lease is lost.
		return l.quorumError("refresh", key, ok, errs, nil)
	}
	return l.quorumError("refresh", key, ok, errs, isNotHeld)
}

// RefreshBatch refreshes every request on every node: one batched call per
// node, in parallel, for nodes that can batch. Each request is judged as
// Refresh judges it.
func (l *locker) RefreshBatch(ctx context.Context, reqs []driver.RefreshRequest) []error {
	out := make([]error, len(reqs))
	if len(reqs) == 0 {
		return out
	}
	// Only the valid requests go to the nodes: an invalid one is
	// reported as such, and must not change the lock it names.
	var valid []int // index in reqs of each request sent
	var send []driver.RefreshRequest
	var windows []time.Duration
	var timeout time.Duration
	for j, r := range reqs {
		w, t, err := l.window(r.TTL)
		if err == nil {
			err = checkToken(r.Token)
		}
		if err != nil {
			out[j] = err
			continue
		}
		valid, send, windows = append(valid, j), append(send, r), append(windows, w)
		if timeout == 0 || t < timeout {
			timeout = t
		}
	}
	if len(send) == 0 {
		return out // every request was invalid
	}
	start := time.Now()
	per := make([][]error, len(l.nodes))
	took := make([]time.Duration, len(l.nodes))
	l.round(ctx, l.all, timeout, func(ctx context.Context, i int) {
		per[i] = driver.RefreshBatch(ctx, l.nodes[i].d, send)
		took[i] = time.Since(start)
	})
	col := make([]error, len(l.nodes))
	for k, j := range valid {
		for i := range l.nodes {
			col[i] = per[i][k]
		}
		out[j] = l.refreshResult(reqs[j].Key, col, took, windows[k])
	}
	return out
}

// Release releases key on every node in parallel, also on nodes that may
// not hold it, so no node stays held that could be freed: first it waits
// for the late answers of the acquire (see Acquire), even if ctx has
// ended, for the acquire's node timeout at most: a late grant must never
// leave a node locked after Release returned. It succeeds, and
// returns, once a majority of nodes is known to be free of the token; the
// others' releases finish meanwhile, and their locks otherwise expire with
// their TTL. It returns an error wrapping ErrNotHeld when too
// many nodes did not hold the lock for a majority to have held it (in
// particular when none did).
func (l *locker) Release(ctx context.Context, key, token string) error {
	if err := checkToken(token); err != nil {
		return err
	}
	if v, ok := l.pending.Load(token); ok {
		// The acquire's calls end within their node timeout (unless a
		// node ignores its context), so this wait is bounded by it.
		g := v.(*lateGrant)
		t := time.NewTimer(g.timeout)
		select {
		case <-g.done:
		case <-t.C:
		}
		t.Stop()
	}
	errs := make([]error, len(l.nodes))
	ok, notHeld := 0, 0
	// Once a majority released, the result is known: the other nodes'
	// releases finish on their own, even if ctx ends meanwhile.
	l.ask(context.WithoutCancel(ctx), l.all, l.cfg.timeoutFor(l.cfg.lockTTL), func(ctx context.Context, i int) (driver.Result, error) {
		return driver.Result{}, l.nodes[i].d.Release(ctx, key, token)
	}, func(i int, _ driver.Result, err error) bool {
		errs[i] = err
		switch {
		case err == nil:
			ok++
		case isNotHeld(err):
			notHeld++
		}
		return ok >= l.quorum
	}, nil)
	switch {
	case notHeld > len(l.nodes)-l.quorum:
		return l.quorumError("release", key, ok, errs, nil)
	case ok+notHeld < l.quorum:
		return l.quorumError("release", key, ok+notHeld, errs, isNotHeld)
	}
	return nil
}

// Close closes every node, and then the clients a URL opened.
func (l *locker) Close() error {
	l.closeOnce.Do(func() {
		l.workers.close()
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

// inspectKey reports the holder that a majority of nodes agree on: the
// same owner on a majority. Its fence is the largest that a majority of
// those nodes report, its TTL the time until fewer than a majority hold
// it, and Since when a majority first held it. ok is false when no owner
// has a majority.
func (l *locker) inspectKey(ctx context.Context, key string) (driver.Holder, bool, error) {
	n := len(l.nodes)
	holders := make([]driver.Holder, n)
	held := make([]bool, n)
	errs := make([]error, n)
	var idx []int
	for i, nd := range l.nodes {
		if nd.inspect == nil {
			errs[i] = fmt.Errorf("%T cannot inspect: %w", nd.d, errors.ErrUnsupported)
			continue
		}
		idx = append(idx, i)
	}
	l.round(ctx, idx, l.cfg.timeoutFor(l.cfg.lockTTL), func(ctx context.Context, i int) {
		holders[i], held[i], errs[i] = l.nodes[i].inspect.Inspect(ctx, key)
	})
	answered := 0
	byOwner := make(map[string][]int)
	for i := range n {
		if errs[i] != nil {
			continue
		}
		answered++
		if held[i] {
			byOwner[holders[i].Owner] = append(byOwner[holders[i].Owner], i)
		}
	}
	if answered < l.quorum {
		return driver.Holder{}, false, l.quorumError("inspect", key, answered, errs, nil)
	}
	for owner, idx := range byOwner {
		if len(idx) < l.quorum {
			continue
		}
		// Each figure is the one a majority of the holder's nodes agree
		// on: the quorum-th largest fence and TTL, and the quorum-th
		// earliest grant. A node that granted late (after the majority
		// decided, see Acquire) may hold a larger fence than the lease's.
		var fences []uint64
		var ttls []time.Duration
		var since []time.Time
		for _, i := range idx {
			fences = append(fences, holders[i].Fence)
			ttls = append(ttls, holders[i].TTL)
			if !holders[i].Since.IsZero() {
				since = append(since, holders[i].Since)
			}
		}
		slices.Sort(fences)
		slices.Sort(ttls)
		slices.SortFunc(since, time.Time.Compare)
		h := driver.Holder{Owner: owner, Fence: fences[len(fences)-l.quorum], TTL: ttls[len(ttls)-l.quorum]}
		if len(since) >= l.quorum {
			h.Since = since[l.quorum-1]
		}
		return h, true, nil
	}
	return driver.Holder{}, false, nil
}

// subscribe subscribes on every node that can notify, and merges their
// notifications: the returned channel receives a value once releases were
// seen on a majority of nodes since the last value. A holder's release
// reaches every node that held it, a majority; a waiter's own failed
// attempts release at most a minority, which must not wake it again and
// again. It fails unless a majority of nodes subscribed; a node that does
// not answer delays it by the node timeout.
//
// The merging goroutine belongs to the subscription: cancel stops it.
func (l *locker) subscribe(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	n := len(l.nodes)
	chans := make([]<-chan struct{}, n)
	cancels := make([]func(), n)
	errs := make([]error, n)
	var idx []int
	for i, nd := range l.nodes {
		if nd.notify == nil {
			errs[i] = fmt.Errorf("%T cannot notify: %w", nd.d, errors.ErrUnsupported)
			continue
		}
		idx = append(idx, i)
	}
	timeout := l.cfg.timeoutFor(l.cfg.lockTTL)
	var wg sync.WaitGroup
	for _, i := range idx {
		wg.Go(func() {
			// The subscription may live on ctx, so the node timeout
			// cancels it only while Subscribe has not returned.
			sctx, cancel := context.WithCancel(ctx)
			t := time.AfterFunc(timeout, cancel)
			c, unsub, err := l.nodes[i].notify.Subscribe(sctx, key, "") // nodes do not queue: see Acquire
			if !t.Stop() && err == nil {
				unsub()
				err = fmt.Errorf("subscribe: %w", context.DeadlineExceeded)
			}
			if err != nil {
				cancel()
				errs[i] = err
				return
			}
			chans[i] = c
			cancels[i] = func() { unsub(); cancel() }
		})
	}
	wg.Wait()
	unsubscribe := func() {
		for _, c := range cancels {
			if c != nil {
				c()
			}
		}
	}
	cases := []reflect.SelectCase{{}} // [0] is stop
	var from []int                    // node of cases[k+1]
	for i, c := range chans {
		if c != nil {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c)})
			from = append(from, i)
		}
	}
	if len(from) < l.quorum {
		unsubscribe()
		return nil, nil, l.quorumError("subscribe to", key, len(from), errs, nil)
	}
	out := make(chan struct{}, 1)
	stop := make(chan struct{})
	done := make(chan struct{})
	cases[0] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(stop)}
	go func() {
		defer close(done)
		seen := make([]bool, n)
		count := 0
		for {
			k, _, ok := reflect.Select(cases)
			if k == 0 {
				return
			}
			if !ok { // closed, against the contract: ignore it from now on
				cases[k].Chan = reflect.Value{}
				continue
			}
			if i := from[k-1]; !seen[i] {
				seen[i] = true
				count++
			}
			if count >= l.quorum {
				select {
				case out <- struct{}{}:
				default: // a wakeup is pending already
				}
				clear(seen)
				count = 0
			}
		}
	}()
	cancel := sync.OnceFunc(func() {
		close(stop)
		<-done
		unsubscribe()
	})
	return out, cancel, nil
}
