package redlock

// lateReleases records, per key, the node releases that were still
// running when their Release returned (it returns at the majority's
// answers), and the undos of a failed acquire still running when it
// returned (it waits for them for the node timeout; see abandon): by
// node, the last such call, until it returns.
// An acquire of the key on this driver waits on each of those nodes for
// that release before it is sent there, so that it finds the node free
// rather than still held by the released token: a caller that releases
// and acquires again at once, while one node fails, still finds the
// majority it needs (two nodes of three, both free), and the undos of two
// failed attempts do not make a third answer busy while nobody holds the
// key. The acquire waits for at most half its node timeout: the release
// may itself wait for an acquire of its token there, which listens for its
// answer for up to the validity window, and unbounded waits would chain
// each attempt's acquire behind the last attempt's undo, or keep the node
// from the key for nearly the TTL behind a lost request. The acquire is
// then sent, and a busy answer, while the release has not returned,
// counts as the node failing, not as busy (errLateUndo). Another client's
// acquire is not ordered so, and may find such a node busy for the
// release's round trip: a Release's late call, or an undo that outlasted
// the node timeout.
type lateReleases map[string][]*nodeCall

// record records the calls of a Release of key that have not returned
// (calls[i] on node i). l.mu must be held.
func (m *lateReleases) record(key string, calls []nodeCall) {
	var r []*nodeCall
	for i := range calls {
		c := &calls[i]
		if c.q == nil || c.done {
			continue
		}
		if r == nil {
			if *m == nil {
				*m = make(lateReleases)
			}
			if r = (*m)[key]; r == nil {
				r = make([]*nodeCall, len(calls))
				(*m)[key] = r
			}
		}
		c.key, c.late = key, true
		r[i] = c
	}
}

// remove forgets c, a recorded call that returned. l.mu must be held.
func (m lateReleases) remove(c *nodeCall) {
	r := m[c.key]
	if r == nil || r[c.node] != c {
		return // a later Release's call took its place
	}
	r[c.node] = nil
	for _, o := range r {
		if o != nil {
			return
		}
	}
	delete(m, c.key)
}
