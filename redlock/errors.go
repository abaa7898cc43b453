package redlock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// QuorumError reports that an operation did not reach a majority of nodes.
// Errs holds one error per failed node, each naming the node by index (and
// address, for Redis nodes) and wrapping its cause, so errors.Is and
// errors.As see through to the causes: errors.Is(err, dlock.ErrUnavailable)
// holds when a node was unavailable.
//
// A QuorumError returned by Refresh wraps dlock.ErrNotHeld only when too
// many nodes reported the lock not held for a majority to hold it, i.e.
// when the lease is lost; otherwise the nodes that reported it are listed
// in text only, and the error is transient.
//
// The driver does not change a QuorumError after returning it, so it may be
// read from any goroutine.
type QuorumError struct {
	// Got is how many nodes succeeded; Need is the majority required.
	Got, Need int
	// Errs are the failed nodes' errors.
	Errs []error

	op, key string // for the message; empty in a literal
	nodes   int
	undone  bool // the driver released every node that may have granted
}

func (e *QuorumError) Error() string {
	var b strings.Builder
	b.WriteString("redlock: ")
	if e.op != "" {
		fmt.Fprintf(&b, "%s %q: ", e.op, e.key)
	}
	fmt.Fprintf(&b, "quorum not reached: succeeded on %d", e.Got)
	if e.nodes > 0 {
		fmt.Fprintf(&b, " of %d", e.nodes)
	}
	fmt.Fprintf(&b, ", %d needed", e.Need)
	for i, err := range e.Errs {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns the failed nodes' errors.
func (e *QuorumError) Unwrap() []error { return e.Errs }

// Timeout reports whether a node's call timed out, so that its outcome is
// unknown and the operation may succeed when repeated. dlock retries
// acquires that fail with such an error.
func (e *QuorumError) Timeout() bool {
	for _, err := range e.Errs {
		var t interface{ Timeout() bool }
		if errors.As(err, &t) && t.Timeout() {
			return true
		}
	}
	return false
}

// OutcomeUnknown reports whether the operation may have been applied on a
// majority although it failed (see [driver.OutcomeUnknown]): a node timed
// out and the driver did not undo the attempt itself. A failed acquire is
// undone by the driver on every node that may hold it, each once its
// acquire answered or gave up (all before Acquire returns, unless that
// takes longer than the node timeout; the others in the background), so it
// is a known failure and dlock does not release it a second time.
func (e *QuorumError) OutcomeUnknown() bool { return !e.undone && e.Timeout() }

// nodeErr names node n in err, keeping err in the chain.
func (n *node) err(err error) error {
	return fmt.Errorf("%s: %w", n.name, err)
}

// errText names node n in err, keeping only its text: for causes that must
// not decide what the whole error means (see [QuorumError]).
func (n *node) errText(err error) error {
	return fmt.Errorf("%s: %v", n.name, err)
}

// validityError reports that a majority confirmed too late: the time left
// of the TTL was used up by the round trips.
func validityError(op, key string, took, window time.Duration) error {
	return fmt.Errorf("redlock: %s %q: a majority confirmed only after %v, beyond the validity window %v: %w",
		op, key, took, window, context.DeadlineExceeded)
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
