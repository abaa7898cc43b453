package linearize

import (
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
