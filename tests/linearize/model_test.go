package linearize

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"
)

// TestModel checks the checker: small histories that a lock with fences
// does and does not explain.
func TestModel(t *testing.T) {
	type op struct {
		in        Input
		out       Output
		call, ret int64
	}
	att := func(tok string, r Result, fence uint64, call, ret int64) op {
		return op{Input{Kind: Attempt, Key: "k", Token: tok}, Output{Result: r, Fence: fence}, call, ret}
	}
	rel := func(tok string, r Result, call, ret int64) op {
		return op{Input{Kind: Release, Key: "k", Token: tok}, Output{Result: r}, call, ret}
	}
	giveUp := func(tok string, at int64) op {
		return op{Input{Kind: GiveUp, Key: "k", Token: tok}, Output{}, at, at}
	}
	handed := func(tok string, fence uint64, call, ret int64) op {
		return op{Input{Kind: HandedOff, Key: "k", Token: tok}, Output{Fence: fence}, call, ret}
	}
	excused := func(tok string, call, ret int64) op {
		return op{Input{Kind: Attempt, Key: "k", Token: tok, Excused: true}, Output{Result: Busy}, call, ret}
	}
	raise := func(tok string, r Result, fence uint64, call, ret int64) op {
		return op{Input{Kind: RaiseFence, Key: "k", Token: tok, Fence: fence}, Output{Result: r}, call, ret}
	}
	for _, tt := range []struct {
		name string
		ops  []op
		want porcupine.CheckResult
	}{
		{"GrantRelease", []op{att("a", OK, 1, 0, 1), rel("a", OK, 2, 3), att("b", OK, 2, 4, 5)}, porcupine.Ok},
		{"TwoHolders", []op{att("a", OK, 1, 0, 1), att("b", OK, 2, 2, 3)}, porcupine.Illegal},
		{"FenceBackwards", []op{att("a", OK, 5, 0, 1), rel("a", OK, 2, 3), att("b", OK, 4, 4, 5)}, porcupine.Illegal},
		{"BusyWhileFree", []op{att("a", OK, 1, 0, 1), rel("a", OK, 2, 3), att("b", Busy, 0, 4, 5)}, porcupine.Illegal},
		// A grant whose reply was lost, undone before its caller gave up.
		{"UnknownUndone", []op{att("a", Unknown, 0, 0, 1), att("b", Busy, 0, 2, 3), rel("a", OK, 4, 5), giveUp("a", 6), att("c", OK, 9, 7, 8)}, porcupine.Ok},
		// The same, never undone: the key stays held by a grant nobody
		// received.
		{"Phantom", []op{att("a", Unknown, 0, 0, 1), giveUp("a", 2), att("b", Busy, 0, 3, 4)}, porcupine.Illegal},
		{"PhantomLater", []op{att("a", Unknown, 0, 0, 1), att("b", Busy, 0, 2, 3), giveUp("a", 4)}, porcupine.Illegal},
		// x's attempt ends unknown while g holds the key, and reaches the
		// backend after g's release (History.Operations extends it to
		// x's undo's return, 7); the undo frees it before y takes the key.
		{"UnknownLandsLate", []op{att("g", OK, 1, 0, 1), att("x", Unknown, 0, 2, 7), rel("g", OK, 4, 5), rel("x", OK, 6, 7), att("y", OK, 2, 8, 9), giveUp("x", 10)}, porcupine.Ok},
		// The same attempt held to the driver call's span: x's undo
		// finds a key x never held.
		{"UnknownWithinDriverCall", []op{att("g", OK, 1, 0, 1), att("x", Unknown, 0, 2, 3), rel("g", OK, 4, 5), rel("x", OK, 6, 7), att("y", OK, 2, 8, 9), giveUp("x", 10)}, porcupine.Illegal},
		// An attempt that must have been granted (its undo found the key
		// held), while g held the key all along: two holders.
		{"GrantedWhileHeld", []op{att("g", OK, 1, 0, 1), {Input{Kind: Attempt, Key: "k", Token: "x", Granted: true}, Output{Result: Unknown}, 2, 3}, rel("g", OK, 4, 5)}, porcupine.Illegal},
		// A void attempt is taken as not granted.
		{"Void", []op{{Input{Kind: Attempt, Key: "k", Token: "z", Void: true}, Output{Result: Unknown}, 0, 1}, rel("z", NotHeld, 2, 3), giveUp("z", 4), att("y", OK, 1, 5, 6)}, porcupine.Ok},
		// A grant by handoff that must have been made, while g held the
		// key all along.
		{"HandedOffGrantedWhileHeld", []op{att("g", OK, 1, 0, 1), {Input{Kind: HandedOff, Key: "k", Token: "u", Granted: true}, Output{}, 2, 3}, rel("g", OK, 4, 5)}, porcupine.Illegal},
		// A late attempt that lands after its undo: a phantom.
		{"UnknownLandsAfterUndo", []op{att("g", OK, 1, 0, 1), att("x", Unknown, 0, 2, 9), rel("g", OK, 4, 5), rel("x", NotHeld, 6, 7), giveUp("x", 10), att("y", Busy, 0, 11, 12)}, porcupine.Illegal},
		// b waits from 1 to 9; a's release hands it the key, with fence 2,
		// which its call returns; c finds it busy meanwhile.
		{"HandedOff", []op{att("a", OK, 1, 0, 1), att("b", Busy, 0, 1, 2), rel("a", OK, 3, 4), att("c", Busy, 0, 5, 6), handed("b", 2, 1, 9), rel("b", OK, 10, 11)}, porcupine.Ok},
		// A grant handed off while a holds the key: two holders.
		{"HandedOffWhileHeld", []op{att("a", OK, 1, 0, 1), handed("b", 2, 2, 3), rel("a", OK, 4, 5)}, porcupine.Illegal},
		{"HandedOffFenceBackwards", []op{att("a", OK, 5, 0, 1), rel("a", OK, 2, 3), handed("b", 4, 1, 9)}, porcupine.Illegal},
		// b's call released a grant it did not use, of a fence it did
		// not note: it may have been handed the key.
		{"HandedOffUnused", []op{att("a", OK, 1, 0, 1), rel("a", OK, 2, 3), handed("b", 0, 1, 9), att("c", Busy, 0, 4, 5), rel("b", OK, 6, 7), giveUp("b", 9), att("c", OK, 3, 10, 11)}, porcupine.Ok},
		// The same grant, never released: the key is left held after b's
		// call returned.
		{"HandedOffKept", []op{att("a", OK, 1, 0, 1), rel("a", OK, 2, 3), handed("b", 0, 1, 9), att("c", Busy, 0, 4, 5), giveUp("b", 9), att("c", Busy, 0, 10, 11)}, porcupine.Illegal},
		// A busy answer that a waiter's unseen grant may explain.
		{"Excused", []op{att("a", OK, 1, 0, 1), rel("a", OK, 2, 3), excused("c", 4, 5), att("c", OK, 2, 6, 7)}, porcupine.Ok},
		// Excused busy answers never excuse two holders.
		{"ExcusedTwoHolders", []op{att("a", OK, 1, 0, 1), excused("c", 2, 3), att("c", OK, 2, 4, 5)}, porcupine.Illegal},
		{"RaiseFence", []op{att("a", OK, 1, 0, 1), raise("a", OK, 7, 2, 3), rel("a", OK, 4, 5), att("b", OK, 8, 6, 7)}, porcupine.Ok},
		{"RaiseFenceThenLower", []op{att("a", OK, 1, 0, 1), raise("a", OK, 7, 2, 3), rel("a", OK, 4, 5), att("b", OK, 6, 6, 7)}, porcupine.Illegal},
		{"RaiseFenceNotHolder", []op{att("a", OK, 1, 0, 1), raise("b", OK, 7, 2, 3)}, porcupine.Illegal},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := make([]porcupine.Operation, len(tt.ops))
			for i, o := range tt.ops {
				h[i] = porcupine.Operation{ClientId: i, Input: o.in, Output: o.out, Call: o.call, Return: o.ret}
			}
			if got := porcupine.CheckOperationsTimeout(Model.ToModel(), h, 0); got != tt.want {
				t.Errorf("check = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestOperations checks what History.Operations derives from the dlock
// calls that returned: grants handed off, give-ups and excused attempts.
func TestOperations(t *testing.T) {
	h := NewHistory()
	// Waiter w subscribed at 10 and returned a lease at 50 whose fence
	// no Acquire reported: handed off. Waiter u subscribed at 20, was
	// handed the key unused and released it at 40, and gave up at 45.
	// TryAcquire t made one busy attempt at 60 and gave up.
	h.Add(1, Input{Kind: Attempt, Key: "k", Token: "w"}, 5, Output{Result: Busy}, 6)
	h.Add(2, Input{Kind: Attempt, Key: "k", Token: "u"}, 15, Output{Result: Busy}, 16)
	h.Add(2, Input{Kind: Release, Key: "k", Token: "u"}, 40, Output{Result: OK}, 41)
	h.Add(3, Input{Kind: Attempt, Key: "k", Token: "t"}, 30, Output{Result: Busy}, 31)
	h.Add(3, Input{Kind: Attempt, Key: "k", Token: "t2"}, 60, Output{Result: Busy}, 61)
	// x's attempt ended unknown at 71, its call's undo freed the key
	// from 72 to 79, and the call returned at 85: the attempt may take
	// effect until the undo returned.
	h.Add(4, Input{Kind: Attempt, Key: "k", Token: "x"}, 70, Output{Result: Unknown}, 71)
	h.Add(4, Input{Kind: Release, Key: "k", Token: "x"}, 72, Output{Result: OK}, 79)
	// z's undo found the key not held: a grant by z's attempt would be
	// illegal wherever it landed, and the attempt keeps its span.
	h.Add(5, Input{Kind: Attempt, Key: "k", Token: "z"}, 90, Output{Result: Unknown}, 91)
	h.Add(5, Input{Kind: Release, Key: "k", Token: "z"}, 92, Output{Result: NotHeld}, 93)
	h.calls = []returned{
		{client: 1, key: "k", tokens: map[string]int64{"w": 10}, kept: "w", fence: 9, ret: 50},
		{client: 2, key: "k", tokens: map[string]int64{"u": 20}, ret: 45},
		{client: 3, key: "k", tokens: map[string]int64{"t": -1}, ret: 32},
		{client: 3, key: "k", tokens: map[string]int64{"t2": -1}, ret: 62},
		{client: 4, key: "k", tokens: map[string]int64{"x": -1}, ret: 85},
		{client: 5, key: "k", tokens: map[string]int64{"z": -1}, ret: 95},
	}
	var got []string
	for _, op := range h.Operations() {
		in, out := op.Input.(Input), op.Output.(Output)
		got = append(got, fmt.Sprintf("%v %s %v fence %d excused %v [%d, %d]", in.Kind, in.Token, out.Result, out.Fence, in.Excused, op.Call, op.Return))
	}
	want := []string{
		"acquire w busy fence 0 excused false [5, 6]",
		"acquire u busy fence 0 excused true [15, 16]", // within w's subscription
		"release u ok fence 0 excused false [40, 41]",
		"acquire t busy fence 0 excused true [30, 31]", // within u's and w's subscriptions
		"acquire t2 busy fence 0 excused false [60, 61]",
		"acquire x unknown fence 0 excused false [70, 79]",
		"release x ok fence 0 excused false [72, 79]",
		"acquire z unknown fence 0 excused false [90, 91]",
		"release z not held fence 0 excused false [92, 93]",
		"handed-off w ok fence 9 excused false [10, 50]",
		"handed-off u ok fence 0 excused false [20, 41]", // granted: only it explains u's release
		"give-up u ok fence 0 excused false [45, 45]",
		"give-up t ok fence 0 excused false [32, 32]",
		"give-up t2 ok fence 0 excused false [62, 62]",
		"give-up x ok fence 0 excused false [85, 85]",
		"give-up z ok fence 0 excused false [95, 95]",
	}
	for _, op := range h.Operations() {
		if in := op.Input.(Input); in.Granted != (in.Kind == Attempt && in.Token == "x" || in.Kind == HandedOff && in.Token == "u") || in.Void != (in.Kind == Attempt && in.Token == "z") {
			t.Errorf("%v %s: Granted = %v, Void = %v", in.Kind, in.Token, in.Granted, in.Void)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("Operations =\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}
