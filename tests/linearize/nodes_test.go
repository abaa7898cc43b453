package linearize

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/dlock-go/dlock/redlock"
	"github.com/redis/go-redis/v9"
)

// TestNodeCapabilitiesAreRedlocks checks that nodeCapabilities names every
// interface that package redlock asserts a value to (its nodes), but the
// one that only redlock.Open asserts of the nodes it makes itself, which
// no Backend can wrap: a capability missing from the list would go
// unchecked on the nodes of a run.
func TestNodeCapabilitiesAreRedlocks(t *testing.T) {
	known := map[string]bool{}
	for _, c := range nodeCapabilities {
		name := c.String() // "driver.Notifier", "redlock.FloorAcquirer"
		known[strings.TrimPrefix(name, "redlock.")] = true
	}
	// accessChecker: redisdriver's CheckAccess, which Open asks of the
	// nodes it opens from a URL.
	openOnly := map[string]bool{"accessChecker": true}
	files, err := filepath.Glob("../../redlock/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("redlock's sources: %v, %d files", err, len(files))
	}
	fset := token.NewFileSet()
	var asserted []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			// A type switch's TypeAssertExpr has no Type; redlock's
			// one switches on go-redis clients, not on nodes.
			if a, ok := n.(*ast.TypeAssertExpr); ok && a.Type != nil {
				name := typeName(a.Type)
				asserted = append(asserted, name)
				if !known[name] && !openOnly[name] {
					t.Errorf("%s: redlock asserts %s, which nodeCapabilities does not list: a node Recorder may drop it", fset.Position(a.Pos()), name)
				}
			}
			return true
		})
	}
	for name := range known {
		if !slices.Contains(asserted, name) {
			t.Errorf("nodeCapabilities lists %s, which redlock no longer asserts", name)
		}
	}
}

// typeName returns "pkg.Name" or "Name" for a type expression.
func typeName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.SelectorExpr:
		return typeName(e.X) + "." + e.Sel.Name
	case *ast.Ident:
		return e.Name
	case *ast.StarExpr:
		return "*" + typeName(e.X)
	}
	return reflect.TypeOf(e).String()
}

// TestNodeRecorderForwards checks the nodes that a run gives a quorum
// backend: each implements the same capabilities, of those a quorum looks
// for (and driver.BatchRefresher), as the node it wraps, on Redis and
// memdriver nodes, and its calls reach the node's own methods (a floor
// proposed through AcquireFloor, a raised fence, a subscription's wake-up,
// a batch refresh) and are recorded in the node's history.
func TestNodeRecorderForwards(t *testing.T) {
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	t.Cleanup(func() { rc.Close() })
	store := memdriver.NewStore()
	inner := []driver.Locker{redisdriver.NewDriver(rc, nil), store.Driver(), memdriver.NewStore().Driver()}
	var wrapped []driver.Locker
	r := &runner{t: t, h: NewHistory(), report: &Report{}, b: Backend{
		NewQuorum: func(t *testing.T, node func(int, driver.Locker) driver.Locker) driver.Locker {
			for i, d := range inner {
				wrapped = append(wrapped, node(i, d))
			}
			d, err := redlock.NewDriver(wrapped, nil)
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
	}}
	q := r.newDriver(0)
	defer q.Close()
	if len(r.report.Errors) > 0 {
		t.Errorf("the run refused the nodes: %v", r.report.Errors)
	}
	for i, d := range inner {
		for _, c := range append(slices.Clone(nodeCapabilities), reflect.TypeFor[driver.BatchRefresher]()) {
			if got, want := reflect.TypeOf(wrapped[i]).Implements(c), reflect.TypeOf(d).Implements(c); got != want {
				t.Errorf("node %d (%T): wrapped implements %v = %v, the node itself %v", i, d, c, got, want)
			}
		}
	}

	ctx := context.Background()
	n := wrapped[1] // over store
	const floor = 1 << 40
	res, err := n.(redlock.FloorAcquirer).AcquireFloor(ctx, driver.Request{Key: "k", Token: "a", TTL: time.Minute}, floor)
	if err != nil || !res.Acquired || res.Fence < floor {
		t.Fatalf("AcquireFloor with floor %d = %+v, %v: want a grant at the floor or above", floor, res, err)
	}
	if err := n.(driver.FenceRaiser).RaiseFence(ctx, "k", "a", res.Fence+10); err != nil {
		t.Fatalf("RaiseFence = %v", err)
	}
	h, ok, err := n.(driver.Inspector).Inspect(ctx, "k")
	if err != nil || !ok || h.Fence != res.Fence+10 {
		t.Errorf("Inspect = %+v, %v, %v: want held with the raised fence %d", h, ok, err, res.Fence+10)
	}
	if errs := n.(driver.BatchRefresher).RefreshBatch(ctx, []driver.RefreshRequest{{Key: "k", Token: "a", TTL: time.Minute}}); errs[0] != nil {
		t.Errorf("RefreshBatch = %v", errs)
	}
	woken, cancel, err := n.(driver.Notifier).Subscribe(ctx, "k")
	if err != nil {
		t.Fatalf("Subscribe = %v", err)
	}
	defer cancel()
	other := store.Driver()
	defer other.Close()
	if err := other.Release(ctx, "k", "a"); err != nil {
		t.Fatalf("Release on the store = %v", err)
	}
	select {
	case <-woken: // the subscription is the store's: its release wakes it
	case <-time.After(10 * time.Second):
		t.Errorf("the subscription through the node's Recorder missed the store's release")
	}

	var kinds []string
	for _, op := range r.h.Node(1).ops {
		kinds = append(kinds, op.Input.(Input).Kind.String())
	}
	if want := []string{"acquire", "raise-fence", "refresh"}; !slices.Equal(kinds, want) {
		t.Errorf("node 1's history = %v, want %v", kinds, want)
	}
}

// TestNodeRecorderRefusesLackingNode checks that a run fails on a node
// that lacks a capability a quorum looks for, which its Recorder would
// claim.
func TestNodeRecorderRefusesLackingNode(t *testing.T) {
	r := &runner{t: t, h: NewHistory(), report: &Report{}, b: Backend{
		NewQuorum: func(t *testing.T, node func(int, driver.Locker) driver.Locker) driver.Locker {
			return node(0, struct{ driver.Locker }{memdriver.NewStore().Driver()})
		},
	}}
	d := r.newDriver(0)
	defer d.Close()
	if len(r.report.Errors) != 1 || !strings.Contains(r.report.Errors[0], "lacks") {
		t.Errorf("errors = %q, want one that the node lacks capabilities", r.report.Errors)
	}
}

// TestNodeHoldsExcuse checks which busy attempts of a quorum the nodes'
// histories excuse: those during which another token may have held the
// key on a node.
func TestNodeHoldsExcuse(t *testing.T) {
	h := NewHistory()
	node := func(i int, kind Kind, key, tok string, r Result, call, ret int64) {
		h.Node(i).Add(0, Input{Kind: kind, Key: key, Token: tok}, call, Output{Result: r}, ret)
	}
	busy := func(key, tok string, call, ret int64) {
		h.Add(1, Input{Kind: Attempt, Key: key, Token: tok}, call, Output{Result: Busy}, ret)
	}
	// a holds k on node 0 from its acquire's call (1) to its release's
	// return (12), a late release after a's quorum call returned.
	node(0, Attempt, "k", "a", OK, 1, 2)
	node(0, Release, "k", "a", OK, 3, 12)
	busy("k", "b", 10, 11) // excused: a on node 0
	busy("k", "c", 20, 21) // not: node 0 freed at 12
	// d's acquire on node 1 may have landed; no release follows.
	node(1, Attempt, "k", "d", Unknown, 25, 26)
	busy("k", "d", 30, 31) // not: its own token
	busy("k", "e", 30, 31) // excused: d on node 1, to the end
	// f's grant on node 2: a release called before the grant returned
	// does not end it; the next one does.
	node(2, Attempt, "k2", "f", OK, 40, 41)
	node(2, Release, "k2", "f", NotHeld, 40, 42)
	node(2, Release, "k2", "f", OK, 50, 55)
	busy("k2", "g", 52, 53) // excused
	busy("k2", "g", 56, 57) // not
	// An acquire of unknown outcome holds until a release shows the
	// key free of its token, not past a release of unknown outcome.
	node(0, Attempt, "k3", "u", Unknown, 60, 61)
	node(0, Release, "k3", "u", Unknown, 62, 63)
	node(0, Release, "k3", "u", NotHeld, 64, 65)
	busy("k3", "v", 64, 65) // excused
	busy("k3", "v", 66, 67) // not
	// Node answers busy, or surely not applied: no hold.
	node(1, Attempt, "k4", "x", Busy, 80, 81)
	node(2, Attempt, "k4", "x", NotApplied, 80, 81)
	busy("k4", "y", 80, 81) // not

	want := map[string]bool{"k b 10": true, "k c 20": false, "k d 30": false, "k e 30": true,
		"k2 g 52": true, "k2 g 56": false, "k3 v 64": true, "k3 v 66": false, "k4 y 80": false}
	got := map[string]bool{}
	for _, op := range h.Operations() {
		in := op.Input.(Input)
		got[fmt.Sprint(in.Key, " ", in.Token, " ", op.Call)] = in.Excused
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("busy attempt %s: excused = %v (recorded %v), want %v", k, g, ok, w)
		}
	}
	holds := nodeHolds(h.nodeOperations())
	if s := holds["k"]; !slices.Contains(s, span{"d", 25, math.MaxInt64}) || !slices.Contains(s, span{"a", 1, 12}) {
		t.Errorf("holds of k = %v", s)
	}
}

// TestQuorumLeftoversExplainBusy checks a history of Redlock's split vote:
// B, D and E each take one of three nodes of a free key and answer busy;
// their undos free the nodes after their calls returned (issue 28), B's
// and D's late, so that C's attempt finds a majority held while nobody
// holds the key. The nodes' histories excuse C's busy answer; with the
// undos done before C's attempt, nothing does, and the history is
// rejected.
func TestQuorumLeftoversExplainBusy(t *testing.T) {
	for _, tt := range []struct {
		name string
		undo int64 // when B's and D's undos return
		want porcupine.CheckResult
	}{
		{"UndosLate", 20, porcupine.Ok},
		{"UndosDone", 8, porcupine.Illegal},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHistory()
			for i, tok := range []string{"b", "d", "e"} {
				undo := map[string]int64{"b": tt.undo, "d": tt.undo, "e": 6}[tok]
				h.Node(i).Add(0, Input{Kind: Attempt, Key: "k", Token: tok}, 0, Output{Result: OK, Fence: 1}, 4)
				h.Node(i).Add(0, Input{Kind: Release, Key: "k", Token: tok}, 5, Output{Result: OK}, undo)
				h.Add(i, Input{Kind: Attempt, Key: "k", Token: tok}, 0, Output{Result: Busy}, 5)
			}
			h.Add(3, Input{Kind: Attempt, Key: "k", Token: "c"}, 10, Output{Result: Busy}, 11)
			h.Add(4, Input{Kind: Attempt, Key: "k", Token: "f"}, 25, Output{Result: OK, Fence: 2}, 26)
			if got := porcupine.CheckOperationsTimeout(Model.ToModel(), h.Operations(), 0); got != tt.want {
				t.Errorf("check = %v, want %v", got, tt.want)
			}
		})
	}
}
