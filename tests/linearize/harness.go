package linearize

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
)

// Backend is one backend under test: how to make its clients, and how to
// tell which keys are left held after a run. A backend is one function
// that returns it (starting servers, registering their cleanup with t).
type Backend struct {
	// NewDriver returns a new client of the backend. The run wraps it in
	// a [Recorder] and a dlock.Locker, and closes it with the Locker.
	NewDriver func(t *testing.T) driver.Locker
	// NewQuorum, set instead of NewDriver for a quorum backend (whose
	// clients hold a key when a majority of nodes grant it), returns a
	// new client made of the node drivers that node returns: node(i, d)
	// wraps d, the client's driver of the backend's i-th node, in a
	// [Recorder] of the run's [History.Node](i). A quorum's attempt may
	// find a key busy that nobody holds, on a majority of nodes that
	// other tokens hold in part (a minority each, which a split vote's
	// undo or a release's late call frees after the quorum's call
	// returned); the nodes' histories tell when they may have (see
	// [Input.Excused]). The run fails if a node lacks a capability that
	// a quorum looks for on its nodes (see nodeCapabilities).
	NewQuorum func(t *testing.T, node func(i int, d driver.Locker) driver.Locker) driver.Locker
	// Held reports which of keys are held, once the run has closed
	// every Locker: each key held on at least one node, with the number
	// of nodes that hold it. [HeldOn] makes it from Inspectors.
	Held func(ctx context.Context, keys []string) ([]Leftover, error)
}

// Leftover is a key held after a run, when no lease of it is valid.
type Leftover struct {
	Key    string
	Nodes  int           // nodes that hold it
	Of     int           // nodes asked: 1 for a single server or a Cluster
	Holder driver.Holder // as the first node that holds it reports it
	// At is when the holder acquired the key, from the start of the
	// run's history, if the backend reports it (Holder.Since).
	At time.Duration
}

// Majority reports whether the key is held on a majority of the nodes, so
// that nobody can take it until it expires.
func (l Leftover) Majority() bool { return 2*l.Nodes > l.Of }

func (l Leftover) String() string {
	at := ""
	if !l.Holder.Since.IsZero() {
		at = fmt.Sprintf(", granted %.3f ms into the run", ms(int64(l.At)))
	}
	return fmt.Sprintf("%s (held on %d of %d nodes, by %s with fence %d%s, for %v more)", l.Key, l.Nodes, l.Of,
		l.Holder.Owner, l.Holder.Fence, at, l.Holder.TTL.Round(time.Millisecond))
}

// HeldOn returns a [Backend.Held] that asks each of nodes, a backend's
// independent nodes (one for a single server, a Cluster or etcd), whether
// it holds each key.
func HeldOn(nodes ...driver.Inspector) func(ctx context.Context, keys []string) ([]Leftover, error) {
	return func(ctx context.Context, keys []string) ([]Leftover, error) {
		var left []Leftover
		for _, k := range keys {
			l := Leftover{Key: k, Of: len(nodes)}
			for _, node := range nodes {
				h, ok, err := node.Inspect(ctx, k)
				if err != nil {
					return nil, fmt.Errorf("inspect %q: %w", k, err)
				}
				if ok {
					if l.Nodes == 0 {
						l.Holder = h
					}
					l.Nodes++
				}
			}
			if l.Nodes > 0 {
				left = append(left, l)
			}
		}
		return left, nil
	}
}

// Workload says how a run drives the backend. Every goroutine loops, until
// Duration has passed or it made MaxOps calls, over a random key: if it
// holds a lease of it, it refreshes it with a new TTL or releases it;
// else it tries to take it: TryAcquire without a deadline or with a
// context that ends 1–5 ms into the call, Acquire with such a context, or
// Acquire waiting 20–60 ms (so that waiters queue and are handed keys).
type Workload struct {
	// Lockers is how many dlock.Lockers run at a time, each over a driver
	// of its own.
	Lockers int
	// Goroutines is how many goroutines share each Locker: calls a driver
	// may carry to the backend in one batch.
	Goroutines int
	// Keys is how many keys the goroutines share.
	Keys int
	// KeyNames, if set, names the keys instead, from a prefix unique to
	// the run (a Cluster test picks keys of one slot owner with it).
	KeyNames func(prefix string) []string
	// Duration bounds the run.
	Duration time.Duration
	// MaxOps bounds each goroutine's calls.
	MaxOps int
	// Reopen, if not zero, closes each Locker about this often, while
	// its callers wait, and puts a new one in its place.
	Reopen time.Duration
	// During, if set, runs alongside the workload (a failover, say); its
	// context ends with the workload.
	During func(ctx context.Context)
}

// Workloads every backend runs.
var (
	// Owned: clients with a Locker each, one call at a time.
	Owned = Workload{Lockers: 6, Goroutines: 1, Keys: 2, Duration: 1500 * time.Millisecond, MaxOps: 300}
	// Shared: many goroutines share each Locker, so that a driver that
	// pipelines batches their calls; contexts end during calls, and
	// Lockers close while their callers wait.
	Shared = Workload{Lockers: 2, Goroutines: 24, Keys: 12, Duration: 2500 * time.Millisecond, MaxOps: 200, Reopen: 400 * time.Millisecond}
)

// leaseTTL is long enough that no lease expires in a run: a key held after
// it is one nobody released.
const leaseTTL = 30 * time.Second

// checkBudget bounds porcupine's search for a run's histories. A history
// that is linearizable is found so in well under a second; one that is not
// may take porcupine long to prove it: each key gets a share, and a key
// whose share runs out is reported undecided.
const checkBudget = 15 * time.Second

// Report is what a run found.
type Report struct {
	Ops       []porcupine.Operation
	Illegal   []string // why each key's history is not linearizable
	TimedOut  []string // keys porcupine could not decide within checkBudget
	Leftovers []Leftover
	Errors    []string // unexpected errors of dlock calls and of the probe
	Counts    map[string]int
	PeakCalls int // the most calls a driver had in flight at once
	Visuals   []string
}

// Failed reports whether the run found anything wrong: a history that is
// not linearizable, a key left held (on a majority of nodes), or an
// unexpected error.
func (r *Report) Failed() bool {
	return len(r.Illegal) > 0 || len(r.TimedOut) > 0 || len(r.Errors) > 0 || len(r.MajorityLeftovers()) > 0
}

// MajorityLeftovers returns the leftovers held on a majority of nodes.
func (r *Report) MajorityLeftovers() []Leftover {
	var m []Leftover
	for _, l := range r.Leftovers {
		if l.Majority() {
			m = append(m, l)
		}
	}
	return m
}

// Check runs w on b and fails t for whatever the run found wrong; keys
// held on a minority of nodes are logged.
func Check(t *testing.T, b Backend, w Workload) *Report {
	t.Helper()
	r := Run(t, b, w)
	for _, e := range r.Errors {
		t.Error(e)
	}
	for _, l := range r.Leftovers {
		if l.Majority() {
			t.Errorf("key %s left held after every Locker closed: nobody holds a lease of it, and nobody else can take it until it expires (a phantom holder)", l)
		} else {
			t.Logf("key %s left held on a minority of nodes", l)
		}
	}
	for _, k := range r.TimedOut {
		t.Errorf("porcupine could not decide within the run's budget of %v: %s", checkBudget, k)
	}
	for _, why := range r.Illegal {
		t.Errorf("history not linearizable for a lock with fences: %s", why)
	}
	return r
}

// Run drives w on b, closes every Locker, looks for keys left held and
// checks the history with porcupine, key by key.
func Run(t *testing.T, b Backend, w Workload) *Report {
	t.Helper()
	name := strings.ReplaceAll(t.Name(), "/", "-")
	prefix := fmt.Sprintf("linearize-%s-%d/", name, time.Now().UnixNano())
	keys := make([]string, w.Keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("%sk%d", prefix, i)
	}
	if w.KeyNames != nil {
		keys = w.KeyNames(prefix)
	}
	r := &runner{t: t, b: b, w: w, h: NewHistory(), keys: keys, report: &Report{}}
	r.run()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	left, err := b.Held(ctx, keys)
	if err != nil {
		r.errorf("probe for keys left held: %v", err)
	}
	rep := r.report
	for i, l := range left {
		if !l.Holder.Since.IsZero() {
			left[i].At = l.Holder.Since.Sub(r.h.start)
		}
	}
	rep.Leftovers = left
	rep.Ops = r.h.Operations()
	rep.Counts = map[string]int{}
	for _, op := range rep.Ops {
		in, out := op.Input.(Input), op.Output.(Output)
		k := fmt.Sprint(in.Kind, "/", out.Result)
		if in.Excused {
			k += " (excused)"
		}
		rep.Counts[k]++
	}
	start := time.Now()
	r.check()
	t.Logf("%d operations on %d keys (checked in %v), at most %d calls in flight on one driver: %v",
		len(rep.Ops), len(keys), time.Since(start).Round(time.Millisecond), rep.PeakCalls, rep.Counts)
	return rep
}

type runner struct {
	t      *testing.T
	b      Backend
	w      Workload
	h      *History
	keys   []string
	mu     sync.Mutex
	report *Report
	recs   []*Recorder
	opened []int // Lockers opened so far, by slot
}

func (r *runner) errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.report.Errors) < 20 {
		r.report.Errors = append(r.report.Errors, fmt.Sprintf(format, args...))
	}
}

// slot holds the current Locker of one group of goroutines.
type slot struct {
	mu sync.Mutex
	l  *dlock.Locker
}

func (s *slot) current() *dlock.Locker {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.l
}

func (s *slot) swap(l *dlock.Locker) *dlock.Locker {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.l
	s.l = l
	return old
}

// newDriver returns a new client of the backend for the Lockers of slot
// i: for a quorum backend, made of nodes that Recorders wrap.
func (r *runner) newDriver(i int) driver.Locker {
	if r.b.NewQuorum == nil {
		return r.b.NewDriver(r.t)
	}
	return r.b.NewQuorum(r.t, func(n int, d driver.Locker) driver.Locker {
		if missing := missingCapabilities(d); len(missing) > 0 {
			r.errorf("node %d (%T) lacks %v, which its Recorder would claim to the quorum", n, d, missing)
		}
		return &Recorder{Locker: d, H: r.h.Node(n), Client: i}
	})
}

func (r *runner) newLocker(i int) *dlock.Locker {
	rec := &Recorder{Locker: r.newDriver(i), H: r.h, Client: i}
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	for len(r.opened) <= i {
		r.opened = append(r.opened, 0)
	}
	r.opened[i]++
	owner := fmt.Sprintf("locker-%d.%d", i, r.opened[i]) // the slot's n-th Locker
	r.mu.Unlock()
	return dlock.New(rec, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: leaseTTL, Owner: owner}})
}

func (r *runner) close(l *dlock.Locker) {
	if err := l.Close(); err != nil {
		r.errorf("Locker.Close = %v", err)
	}
}

func (r *runner) run() {
	ctx, stop := context.WithTimeout(context.Background(), r.w.Duration)
	defer stop()
	slots := make([]*slot, r.w.Lockers)
	for i := range slots {
		slots[i] = &slot{l: r.newLocker(i)}
	}
	var wg, side sync.WaitGroup
	for i, s := range slots {
		for g := range r.w.Goroutines {
			wg.Go(func() { r.work(ctx, i*r.w.Goroutines+g, s) })
		}
		if r.w.Reopen > 0 {
			side.Go(func() { r.reopen(ctx, i, s) })
		}
	}
	if r.w.During != nil {
		side.Go(func() { r.w.During(ctx) })
	}
	wg.Wait()
	stop()
	side.Wait()
	for _, s := range slots {
		r.close(s.current())
	}
	for _, rec := range r.recs {
		r.report.PeakCalls = max(r.report.PeakCalls, rec.PeakCalls())
	}
}

// reopen closes s's Locker at random intervals of about Reopen, while its
// goroutines use it, and puts a new one in its place first.
func (r *runner) reopen(ctx context.Context, i int, s *slot) {
	for {
		d := r.w.Reopen/2 + rand.N(r.w.Reopen)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		r.close(s.swap(r.newLocker(i)))
	}
}

// work is one goroutine of the workload (see [Workload]).
func (r *runner) work(ctx context.Context, client int, s *slot) {
	held := map[string]*dlock.Lease{}
	// Calls are not cut short by the run's end: a goroutine stops
	// between calls.
	call := context.Background()
	for n := 0; n < r.w.MaxOps && ctx.Err() == nil; n++ {
		key := r.keys[rand.N(len(r.keys))]
		if lease := held[key]; lease != nil {
			switch {
			case lease.Err() != nil: // lost: its Locker closed
				delete(held, key)
				lease.Release(call)
			case rand.N(3) == 0:
				lease.Refresh(call, time.Duration(20+rand.N(21))*time.Second)
			default:
				delete(held, key)
				lease.Release(call)
			}
			continue
		}
		lease, deadline, err := r.acquire(call, client, s.current(), key)
		switch {
		case err == nil:
			held[key] = lease
			time.Sleep(rand.N(2 * time.Millisecond)) // the holder's work
		case errors.Is(err, dlock.ErrClosed), errors.Is(err, dlock.ErrNotAcquired):
			// Held, or the Locker closed under the call.
		case deadline && errors.Is(err, context.DeadlineExceeded):
			// The call's context ended first. It may also say that the
			// backend was failing until then (ErrUnavailable): a
			// quorum that a deadline cut short, a failover.
		case errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, dlock.ErrUnavailable):
			// A call without a deadline: a node's own timeout (a
			// quorum driver's), of unknown outcome.
		default:
			r.errorf("acquire %q: %v", key, err)
		}
	}
	for _, lease := range held {
		lease.Release(call)
	}
}

// acquire makes one dlock call of a random kind on key and records what
// it means for its tokens (see [History.Returned]). It reports whether
// the call had a deadline.
func (r *runner) acquire(ctx context.Context, client int, l *dlock.Locker, key string) (lease *dlock.Lease, deadline bool, err error) {
	ctx, toks := WithTokens(ctx)
	short := time.Duration(1+rand.N(5)) * time.Millisecond
	deadline = true
	switch rand.N(4) {
	case 0:
		lease, err = l.TryAcquire(ctx, key, nil)
		deadline = false
	case 1:
		cctx, cancel := context.WithTimeout(ctx, short)
		lease, err = l.TryAcquire(cctx, key, nil)
		cancel()
	case 2:
		cctx, cancel := context.WithTimeout(ctx, short)
		lease, err = l.Acquire(cctx, key, nil)
		cancel()
	default:
		cctx, cancel := context.WithTimeout(ctx, time.Duration(20+rand.N(41))*time.Millisecond)
		lease, err = l.Acquire(cctx, key, nil)
		cancel()
	}
	r.h.Returned(client, key, toks, lease, r.h.Now())
	return lease, deadline, err
}

// check checks the history key by key, and describes each key whose
// history porcupine rejects.
func (r *runner) check() {
	// An excused busy attempt and a void one are explained by any
	// state: checking them costs time and decides nothing.
	byKey := map[string][]porcupine.Operation{}
	for _, op := range r.report.Ops {
		in := op.Input.(Input)
		if in.Kind == Attempt && op.Output.(Output).Result == Busy && in.Excused || in.Void {
			continue
		}
		byKey[in.Key] = append(byKey[in.Key], op)
	}
	model := Model
	model.Partition = nil
	m := model.ToModel()
	deadline := time.Now().Add(checkBudget)
	for _, k := range r.keys {
		ops := byKey[k]
		// Each key gets a share of the budget (twice its part, for
		// what the others leave), so that one hard history does not
		// leave the rest undecided.
		left := min(time.Until(deadline), 2*checkBudget/time.Duration(len(r.keys)))
		if left <= 0 {
			r.report.TimedOut = append(r.report.TimedOut, fmt.Sprintf("%s: %d operations, not checked", k, len(ops)))
			continue
		}
		start := time.Now()
		res, info := porcupine.CheckOperationsVerbose(m, ops, left)
		if d := time.Since(start); d > time.Second {
			r.t.Logf("checking %s (%d operations) took %v", k, len(ops), d.Round(time.Millisecond))
		}
		switch res {
		case porcupine.Ok:
			continue
		case porcupine.Unknown:
			r.report.TimedOut = append(r.report.TimedOut, fmt.Sprintf("%s: %d operations", k, len(ops)))
			continue
		}
		why := fmt.Sprintf("%s: %s", k, diagnose(ops, info))
		if path := r.visualize(m, info, k); path != "" {
			why += "; visualization: " + path + " and .txt"
			r.report.Visuals = append(r.report.Visuals, path)
		}
		r.report.Illegal = append(r.report.Illegal, why)
	}
}

func (r *runner) visualize(m porcupine.Model, info porcupine.LinearizationInfo, key string) string {
	dir := os.Getenv("DLOCK_ARTIFACTS")
	if dir == "" {
		dir = os.TempDir()
	}
	name := strings.NewReplacer("/", "-", " ", "-").Replace(key)
	path := filepath.Join(dir, "linearize-"+name+".html")
	if err := porcupine.VisualizePath(m, info, path); err != nil {
		r.t.Logf("visualization: %v", err)
		return ""
	}
	var ops []porcupine.Operation
	for _, op := range r.report.Ops {
		if op.Input.(Input).Key == key {
			ops = append(ops, op)
		}
	}
	text := describe(ops, func(porcupine.Operation) bool { return true }, -1)
	if err := os.WriteFile(strings.TrimSuffix(path, ".html")+".txt", []byte(text), 0o644); err != nil {
		r.t.Logf("history: %v", err)
	}
	return path
}

// diagnose names the operation that the longest explainable prefix of
// ops cannot be followed by, and what the key could be then.
func diagnose(ops []porcupine.Operation, info porcupine.LinearizationInfo) string {
	var best []int
	for _, part := range info.PartialLinearizations() {
		for _, lin := range part {
			if len(lin) > len(best) {
				best = lin
			}
		}
	}
	states := []state{{}}
	done := make([]bool, len(ops))
	for _, i := range best {
		done[i] = true
		var next []state
		for _, s := range states {
			for _, n := range step(s, ops[i].Input.(Input), ops[i].Output.(Output)) {
				if !slices.Contains(next, n.(state)) {
					next = append(next, n.(state))
				}
			}
		}
		states = next
	}
	// The culprit: of the operations left, the one that returned first
	// (it had to come next, or earlier).
	culprit := -1
	for i, op := range ops {
		if !done[i] && (culprit < 0 || op.Return < ops[culprit].Return) {
			culprit = i
		}
	}
	if culprit < 0 {
		return "no operation left unexplained (porcupine disagrees)"
	}
	var could []string
	for _, s := range states {
		could = append(could, Model.DescribeState(s))
	}
	op := ops[culprit]
	near := describeNear(ops, op)
	return fmt.Sprintf("after %d of %d operations, the key is %s; then %s [%.3f–%.3f ms] cannot be explained; operations around it:\n%s",
		len(best), len(ops), strings.Join(could, " or "), Model.DescribeOperation(op.Input, op.Output),
		ms(op.Call), ms(op.Return), near)
}

// describeNear lists the operations that overlap a window around op, by
// call time.
func describeNear(ops []porcupine.Operation, op porcupine.Operation) string {
	from, to := op.Call-int64(2*time.Millisecond), op.Return+int64(time.Millisecond)
	return describe(ops, func(o porcupine.Operation) bool { return o.Return >= from && o.Call <= to }, 40, op)
}

// describe lists the operations of ops that keep selects, by call time, at
// most limit of them unless it is negative, marking mark's.
func describe(ops []porcupine.Operation, keep func(porcupine.Operation) bool, limit int, mark ...porcupine.Operation) string {
	var near []porcupine.Operation
	for _, o := range ops {
		if keep(o) {
			near = append(near, o)
		}
	}
	slices.SortFunc(near, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
	var b strings.Builder
	for i, o := range near {
		if i == limit {
			fmt.Fprintf(&b, "\t… %d more\n", len(near)-i)
			break
		}
		note := ""
		if slices.Contains(mark, o) {
			note = "  ← unexplained"
		}
		fmt.Fprintf(&b, "\t[%9.3f–%9.3f ms] client %2d %s%s\n", ms(o.Call), ms(o.Return), o.ClientId,
			Model.DescribeOperation(o.Input, o.Output), note)
	}
	return b.String()
}

func ms(t int64) float64 { return float64(t) / 1e6 }
