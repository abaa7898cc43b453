package linearize

import (
	"math"
	"reflect"

	"github.com/anishathalye/porcupine"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redlock"
)

// Node returns the history of the calls that a quorum backend's clients
// make of the backend's i-th node (see [Backend.NewQuorum]), on h's clock:
// [Recorder]s that wrap the node drivers add to it. [History.Operations]
// excuses a busy attempt of the quorum by what the nodes' histories show
// other tokens holding (see [Input.Excused]).
func (h *History) Node(i int) *History {
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(h.nodes) <= i {
		h.nodes = append(h.nodes, &History{start: h.start})
	}
	return h.nodes[i]
}

// nodeOperations returns the operations of each node's history, by node.
func (h *History) nodeOperations() [][]porcupine.Operation {
	h.mu.Lock()
	nodes := append([]*History(nil), h.nodes...)
	h.mu.Unlock()
	ops := make([][]porcupine.Operation, len(nodes))
	for i, n := range nodes {
		n.mu.Lock()
		ops[i] = append([]porcupine.Operation(nil), n.ops...)
		n.mu.Unlock()
	}
	return ops
}

// nodeCapabilities are the optional interfaces that package redlock looks
// for on its nodes by type assertion, and that a [Recorder] implements
// whatever the driver it wraps: a Recorder of a node that lacks one would
// make the quorum count a capability the node does not have (its answers
// would be errors.ErrUnsupported), and check another program. A run fails
// on such a node (see runner.newDriver). driver.BatchRefresher, which the
// quorum asserts through driver.RefreshBatch, is not among them: the
// Recorder's RefreshBatch refreshes one by one, as driver.RefreshBatch
// does, where the node cannot batch.
var nodeCapabilities = []reflect.Type{
	reflect.TypeFor[driver.Notifier](),
	reflect.TypeFor[driver.Inspector](),
	reflect.TypeFor[driver.FenceRaiser](),
	reflect.TypeFor[redlock.FloorAcquirer](),
}

// missingCapabilities returns the nodeCapabilities that d lacks.
func missingCapabilities(d driver.Locker) []reflect.Type {
	var missing []reflect.Type
	for _, c := range nodeCapabilities {
		if !reflect.TypeOf(d).Implements(c) {
			missing = append(missing, c)
		}
	}
	return missing
}

// nodeToken is one token's hold of a key on one node.
type nodeToken struct {
	key, token string
}

// nodeHolds returns, by key, the spans during which a token may have held
// the key on a node, from the histories of a quorum's nodes. A span starts
// at the call of each node Acquire (or AcquireFloor) that was granted or
// may have been (unknown outcome: not busy, not surely unapplied), and ends
// at the return of the first Release of the token on that node called after
// the Acquire returned that shows the key free of the token then: one that
// released it or found it not held. (The quorum undoes an Acquire of
// unknown outcome once the Acquire returned; were its command to land
// after the undo, the node would keep the key to the end of the run, as a
// leftover, and busy answers it caused would go unexcused: the run would
// fail, not pass.) Without such a Release, the span lasts to the end of
// the history. Nothing else frees a node's key: no lease expires in a run
// (see leaseTTL).
func nodeHolds(nodes [][]porcupine.Operation) map[string][]span {
	holds := map[string][]span{}
	for _, ops := range nodes {
		releases := map[nodeToken][]porcupine.Operation{}
		for _, op := range ops {
			if in := op.Input.(Input); in.Kind == Release {
				k := nodeToken{in.Key, in.Token}
				releases[k] = append(releases[k], op)
			}
		}
		for _, op := range ops {
			in, out := op.Input.(Input), op.Output.(Output)
			if in.Kind != Attempt || out.Result != OK && out.Result != Unknown {
				continue
			}
			end := int64(math.MaxInt64)
			for _, rel := range releases[nodeToken{in.Key, in.Token}] {
				r := rel.Output.(Output).Result
				if (r == OK || r == NotHeld) && rel.Call >= op.Return && rel.Return < end {
					end = rel.Return
				}
			}
			holds[in.Key] = append(holds[in.Key], span{in.Token, op.Call, end})
		}
	}
	return holds
}
