package linearize

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// Kind is the kind of a recorded driver call or client event.
type Kind int

const (
	// Attempt is one driver Acquire.
	Attempt Kind = iota
	// Release is one driver Release.
	Release
	// Refresh is one driver Refresh, or one item of a RefreshBatch.
	Refresh
	// GiveUp is recorded when a dlock Acquire or TryAcquire returned,
	// for each token of the call but the returned lease's: from then on,
	// no such token may hold the key.
	GiveUp
	// HandedOff is a grant that a release or a pass-on made to a
	// waiter's token within the waiter's call, between its handoff
	// subscription and the call's return (see [driver.Handoff]): the key
	// handed over within the release, without an Acquire of the token
	// reporting it. With Output.Fence set (the fence of the lease the call
	// returned, which no Acquire of the token reported), it was made; with
	// Output.Fence 0 (a grant the call released as it gave up, of a
	// fence it did not record), it may also not have been.
	HandedOff
	// RaiseFence is one driver FenceRaiser.RaiseFence, with the fence in
	// Input.Fence.
	RaiseFence
)

func (k Kind) String() string {
	return [...]string{"acquire", "release", "refresh", "give-up", "handed-off", "raise-fence"}[k]
}

// Result is how a driver call ended.
type Result int

const (
	// OK: granted, released, refreshed.
	OK Result = iota
	// Busy: an Acquire that found the key held by another token.
	Busy
	// NotHeld: a Release or Refresh by a token that did not hold the key.
	NotHeld
	// Unknown: the call failed and may or may not have been applied.
	Unknown
	// NotApplied: the call failed and surely was not applied
	// (ErrUnavailable).
	NotApplied
)

func (r Result) String() string {
	return [...]string{"ok", "busy", "not held", "unknown", "not applied"}[r]
}

// Input is an operation's input.
type Input struct {
	Kind  Kind
	Key   string
	Token string
	// Excused marks a busy Attempt that may have found the key held by
	// a token the history does not show holding it: one that overlaps the
	// handoff subscription of a waiter with another token, to which a
	// release may have handed the key as the waiter stopped listening
	// (a grant the waiter finds in its channel and releases), or, for a
	// quorum driver, a time when the nodes' histories ([History.Node]) show
	// that another token may have held the key on a node: a minority
	// that a split vote's undo, or a release's late call, frees after the
	// quorum's call returned (two such minorities make a busy majority with
	// nobody holding the key). Such an attempt proves nothing about the
	// key.
	Excused bool
	// Granted marks an Attempt of unknown outcome, or a [HandedOff] of
	// unknown fence, that must have been granted: a Release of its token
	// found the key held, and nothing else could have granted the token
	// the key.
	Granted bool
	// Void marks an Attempt of unknown outcome that no legal history can
	// have granted: its call gave up its token, and no Release of the
	// token may have freed the key nor could a handoff have granted it,
	// so a grant would stay until the token's [GiveUp] and fail there.
	// The model takes it as not granted, the same verdict at a fraction
	// of porcupine's search: tried granted, it fails only at the GiveUp.
	Void bool
	// Fence is the fence a RaiseFence raises to.
	Fence uint64
}

// Output is an operation's output.
type Output struct {
	Result Result
	Fence  uint64 // of a granted Attempt
}

// state is the model's state for one key. Fences of later grants exceed
// last; a grant of unknown outcome keeps last as a lower bound.
type state struct {
	holder string // token, "" when free
	fence  uint64 // the holder's fence, 0 if unknown
	last   uint64
}

// Model is a lock per key, with fences. It partitions histories by key.
var Model = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(Input).Key
			if byKey[k] == nil {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		parts := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, byKey[k])
		}
		return parts
	},
	Init: func() []any { return []any{state{}} },
	Step: func(st, in, out any) []any {
		return step(st.(state), in.(Input), out.(Output))
	},
	DescribeOperation: func(in, out any) string {
		i, o := in.(Input), out.(Output)
		s := fmt.Sprintf("%s(%s) → %s", i.Kind, short(i.Token), o.Result)
		if i.Kind == Attempt && o.Result == Busy && i.Excused {
			s += " (excused)"
		}
		if i.Kind == Attempt && o.Result == Unknown && i.Granted {
			s += " (granted)"
		}
		if i.Kind == Attempt && o.Result == Unknown && i.Void {
			s += " (void)"
		}
		if i.Kind == Attempt && o.Result == OK {
			s += fmt.Sprintf(" fence %d", o.Fence)
		}
		switch i.Kind {
		case GiveUp:
			s = fmt.Sprintf("give-up(%s)", short(i.Token))
		case HandedOff:
			s = fmt.Sprintf("handed-off(%s) fence %d", short(i.Token), o.Fence)
			if o.Fence == 0 {
				s = fmt.Sprintf("handed-off(%s) or not", short(i.Token))
			}
			if o.Fence == 0 && i.Granted {
				s = fmt.Sprintf("handed-off(%s), fence unknown", short(i.Token))
			}
		case RaiseFence:
			s = fmt.Sprintf("raise-fence(%s, %d) → %s", short(i.Token), i.Fence, o.Result)
		}
		return s
	},
	DescribeState: func(st any) string {
		s := st.(state)
		if s.holder == "" {
			return fmt.Sprintf("free (last fence %d)", s.last)
		}
		return fmt.Sprintf("held by %s, fence %d (last %d)", short(s.holder), s.fence, s.last)
	},
}

func short(token string) string { return token[:min(6, len(token))] }

func step(s state, in Input, out Output) []any {
	mine := s.holder == in.Token
	switch in.Kind {
	case Attempt:
		return stepAttempt(s, in, out)
	case Release:
		return stepRelease(s, mine, out)
	case Refresh:
		switch {
		case out.Result == OK && !mine:
			return nil
		case out.Result == NotHeld && mine:
			return nil
		}
		return []any{s}
	case GiveUp:
		if mine {
			return nil // a phantom: held by a grant its caller gave up on
		}
		return []any{s}
	case HandedOff:
		if out.Fence == 0 {
			return maybeGranted(s, in.Token, in.Granted, false)
		}
		return grantedWith(s, in.Token, out.Fence)
	case RaiseFence:
		return stepRaiseFence(s, in, out)
	}
	return nil
}

// stepAttempt is step for an Attempt.
func stepAttempt(s state, in Input, out Output) []any {
	switch out.Result {
	case OK:
		return grantedWith(s, in.Token, out.Fence)
	case Busy:
		if s.holder != "" && s.holder != in.Token || in.Excused {
			return []any{s}
		}
		return nil
	case Unknown:
		return maybeGranted(s, in.Token, in.Granted, in.Void)
	}
	return []any{s}
}

// grantedWith is the state after a grant to token with fence, if it is
// legal: the holder's own grant again (the same fence, or its first known
// one), or a free key's grant with a fence above every earlier one.
func grantedWith(s state, token string, fence uint64) []any {
	switch {
	case s.holder == token && (s.fence == 0 || fence == s.fence):
		s.fence = fence
		return []any{s}
	case s.holder == "" && fence > s.last:
		return []any{state{holder: token, fence: fence, last: fence}}
	}
	return nil
}

// maybeGranted is the states after a grant to token of unknown fence that
// may have been made: none (unless granted says it was), and, if the key
// is free and the grant not void, token holding it.
func maybeGranted(s state, token string, granted, void bool) []any {
	var next []any
	if !granted {
		next = append(next, s)
	}
	if s.holder == "" && !void {
		next = append(next, state{holder: token, last: s.last})
	}
	return next
}

// stepRelease is step for a Release; mine tells whether its token holds
// the key.
func stepRelease(s state, mine bool, out Output) []any {
	switch out.Result {
	case OK:
		if mine {
			return []any{state{last: s.last}}
		}
		return nil
	case NotHeld:
		if mine {
			return nil
		}
	case Unknown:
		if mine {
			return []any{s, state{last: s.last}}
		}
	}
	return []any{s}
}

// stepRaiseFence is step for a RaiseFence.
func stepRaiseFence(s state, in Input, out Output) []any {
	mine := s.holder == in.Token
	raised := state{holder: s.holder, fence: in.Fence, last: max(s.last, in.Fence)}
	switch out.Result {
	case OK:
		if mine {
			return []any{raised}
		}
		return nil
	case NotHeld:
		if mine {
			return nil
		}
	case Unknown:
		if mine {
			return []any{s, raised}
		}
	}
	return []any{s}
}
