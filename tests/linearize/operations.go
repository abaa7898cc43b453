package linearize

import (
	"slices"

	"github.com/anishathalye/porcupine"
)

// Operations returns the recorded driver calls, and for each dlock call
// that returned:
//
//   - a [GiveUp] at its return for every token of it but the lease's;
//   - a [HandedOff] grant, from the token's handoff subscription to the
//     return, of the lease's fence to the lease's token, if no Acquire
//     reported that grant (it came in a Turn), and of an unknown fence,
//     maybe, to a token that a Release freed before the return (a grant
//     that came in a Turn and was released unused; the token may have
//     been granted again by an attempt since, as when dlock passes a turn
//     on).
//
// An attempt of unknown outcome may take effect until its call returned,
// not only until the driver returned it: a driver that returns at the
// context's deadline may still deliver the command (a batch written after
// its callers left), and dlock's undo Release, ordered after it, frees
// what it granted. Its operation lasts until just before the call's
// return, where the token's [GiveUp] requires that it no longer holds the
// key; and no later than the latest return of a Release of the token
// that may have freed it, after which a grant would stay until the
// GiveUp.
// (If no Release of the token may have freed the key, a grant by the
// attempt is illegal whenever it lands, and the attempt keeps its span.)
// If a Release of the token found the key held and nothing else could
// have granted it to the token (no other Attempt, no handoff
// subscription), the attempt was granted ([Input.Granted]): the model
// then need not try it ungranted, which porcupine would only find wrong
// at the Release, after a long search; so was a maybe-grant by handoff
// of a token that no attempt may have granted. If no Release of the
// token may have freed the key and its call gave it up, the attempt is
// void ([Input.Void]): a grant would fail at the GiveUp.
//
// A busy attempt is excused (see [Input.Excused]) if it overlaps the
// handoff subscription of another token, from its start to its call's
// return, or, for a quorum backend (one with [History.Node] histories), a
// span during which another token may have held the key on a node (see
// nodeHolds).
func (h *History) Operations() []porcupine.Operation {
	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	calls := append([]returned(nil), h.calls...)
	h.mu.Unlock()

	f := newTokenFacts(ops, calls)
	f.shapeUnknownAttempts(ops)
	ops, unseen := f.callOperations(ops, calls)
	for key, spans := range nodeHolds(h.nodeOperations()) {
		unseen[key] = append(unseen[key], spans...)
	}
	excuse(ops, unseen)
	return ops
}

// grant is a token's grant with a fence.
type grant struct {
	token string
	fence uint64
}

// span is a time during which a token may have held a key unseen.
type span struct {
	token    string
	from, to int64
}

// tokenFacts is what a history tells of each token, for Operations.
type tokenFacts struct {
	// lastFree is the latest return of a Release that may have freed
	// each token: a grant landing after it stays until the token's
	// GiveUp, illegal wherever it lands, so an attempt extends no further
	// (which keeps porcupine's search small).
	lastFree map[string]int64
	// freed: tokens that a Release found holding the key; grantable: how
	// many Attempts that may have granted each token there were.
	freed      map[string]bool
	grantable  map[string]int
	returnOf   map[string]int64   // each token's call's return
	subscribed map[string]bool    // tokens a handoff may have granted
	givenUp    map[string]bool    // tokens their call gave up
	granted    map[grant]bool     // grants reported by Acquires
	released   map[string][]int64 // call times of the Releases that freed each token
}

// newTokenFacts collects the facts of ops and calls, but granted and
// released (see shapeUnknownAttempts).
func newTokenFacts(ops []porcupine.Operation, calls []returned) *tokenFacts {
	f := &tokenFacts{lastFree: map[string]int64{}, freed: map[string]bool{}, grantable: map[string]int{},
		returnOf: map[string]int64{}, subscribed: map[string]bool{}, givenUp: map[string]bool{},
		granted: map[grant]bool{}, released: map[string][]int64{}}
	for _, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		switch {
		case in.Kind == Release && (out.Result == OK || out.Result == Unknown):
			f.lastFree[in.Token] = max(f.lastFree[in.Token], op.Return)
			f.freed[in.Token] = f.freed[in.Token] || out.Result == OK
		case in.Kind == Attempt && (out.Result == OK || out.Result == Unknown):
			f.grantable[in.Token]++
		}
	}
	for _, c := range calls {
		for tok, sub := range c.tokens {
			f.returnOf[tok] = c.ret
			f.subscribed[tok] = sub >= 0
			f.givenUp[tok] = tok != c.kept
		}
	}
	return f
}

// shapeUnknownAttempts extends each Attempt of unknown outcome of a dlock
// call to just before its call's return (before the GiveUp, not beside
// it), and no later than lastFree, and marks it Granted or Void where the
// facts decide it (see Operations). It records the grants the Acquires
// reported and the Releases that freed each token.
func (f *tokenFacts) shapeUnknownAttempts(ops []porcupine.Operation) {
	for i, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		if ret, ok := f.returnOf[in.Token]; ok && in.Kind == Attempt && out.Result == Unknown {
			ops[i].Return = max(op.Return, min(ret-1, f.lastFree[in.Token]))
			_, mayFree := f.lastFree[in.Token]
			switch {
			case f.freed[in.Token] && f.grantable[in.Token] == 1 && !f.subscribed[in.Token]:
				in.Granted = true
				ops[i].Input = in
			case !mayFree && f.givenUp[in.Token]:
				in.Void = true
				ops[i].Input = in
			}
		}
		switch {
		case in.Kind == Attempt && out.Result == OK:
			f.granted[grant{in.Token, out.Fence}] = true
		case in.Kind == Release && out.Result == OK:
			f.released[in.Token] = append(f.released[in.Token], op.Call)
		}
	}
}

// callOperations appends to ops the operations of each dlock call that
// returned: its HandedOff grants and its GiveUps (see Operations). It
// returns them with the spans, by key, during which a handoff may have
// granted a token the key unseen.
func (f *tokenFacts) callOperations(ops []porcupine.Operation, calls []returned) ([]porcupine.Operation, map[string][]span) {
	unseen := map[string][]span{}
	for _, c := range calls {
		for tok, sub := range c.tokens {
			in := Input{Key: c.key, Token: tok}
			if sub >= 0 {
				unseen[c.key] = append(unseen[c.key], span{tok, sub, c.ret})
				ops = f.handedOff(ops, c, tok, sub)
			}
			if tok != c.kept {
				in.Kind = GiveUp
				ops = append(ops, porcupine.Operation{ClientId: c.client, Input: in, Call: c.ret, Output: Output{}, Return: c.ret})
			}
		}
	}
	return ops, unseen
}

// handedOff appends to ops the HandedOff grants to tok, subscribed for
// handoff at sub in call c: the lease's, unless an Acquire reported it,
// and one of unknown fence if a Release freed tok before c returned.
func (f *tokenFacts) handedOff(ops []porcupine.Operation, c returned, tok string, sub int64) []porcupine.Operation {
	in := Input{Kind: HandedOff, Key: c.key, Token: tok}
	if tok == c.kept && !f.granted[grant{tok, c.fence}] {
		ops = append(ops, porcupine.Operation{ClientId: c.client, Input: in, Call: sub, Output: Output{Fence: c.fence}, Return: c.ret})
	}
	if slices.ContainsFunc(f.released[tok], func(at int64) bool { return at < c.ret }) {
		maybe := porcupine.Operation{ClientId: c.client, Input: in, Call: sub, Output: Output{}, Return: c.ret}
		if tok != c.kept && f.grantable[tok] == 0 && f.freed[tok] {
			// Only this grant can explain the Release that found the
			// key held, which it precedes.
			maybe.Input = Input{Kind: HandedOff, Key: c.key, Token: tok, Granted: true}
			maybe.Return = max(sub, min(c.ret, f.lastFree[tok]))
		}
		ops = append(ops, maybe)
	}
	return ops
}

// excuse marks every busy Attempt that overlaps a span of another token
// on its key as Excused.
func excuse(ops []porcupine.Operation, unseen map[string][]span) {
	for i, a := range ops {
		in, out := a.Input.(Input), a.Output.(Output)
		if in.Kind != Attempt || out.Result != Busy {
			continue
		}
		for _, s := range unseen[in.Key] {
			if s.token != in.Token && s.from <= a.Return && a.Call <= s.to {
				in.Excused = true
				ops[i].Input = in
				break
			}
		}
	}
}
