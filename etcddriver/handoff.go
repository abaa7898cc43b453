package etcddriver

import (
	"context"
	"fmt"
	"sync"

	"github.com/dlock-go/dlock/driver"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// SubscribeHandoff implements [driver.Handoff] for a lock's waiter: it
// reads the entries of key with their create revisions, then watches
// them from that read's revision on, so that it knows the queue at every
// revision. Only a delete can move the waiter's entry to the front (every
// new entry is behind it): at each delete, if the waiter's entry is now
// the first, the key is the token's, a grant that stands (nothing takes it
// back but the lease's expiry), and the subscription sends a Turn with
// Granted, the entry's create revision as fence and the attempt that last
// renewed the entry's lease (see AcquireQueued). A delete that leaves the
// entry behind another wakes nobody: a release wakes exactly the next
// waiter. The subscription sends a plain wake-up instead when the token
// has no entry (its first queued attempt is still to come, or its entry
// expired), or when its entry is first but no queued attempt renewed it
// yet: the waiter's next attempt then finds itself the holder.
//
// Cancel ends the watch, then, unless the token holds the key by a Turn
// or an attempt's reply, deletes the token's entry, which passes the key
// (if the entry was first) or the place to the next waiter. If that
// delete fails, it leaves a Turn with Granted and Attempt 0 in the
// channel: the caller releases the token, which deletes the entry.
func (d *locker) SubscribeHandoff(ctx context.Context, key, token string) (<-chan driver.Turn, func(), error) {
	if err := d.check(); err != nil {
		return nil, nil, err
	}
	dig := digest(token)
	lo, hi := d.entryRange(key)
	rctx, cancel := d.bound(ctx)
	snap, err := d.client.Get(rctx, lo, clientv3.WithRange(hi), clientv3.WithKeysOnly())
	cancel()
	if err != nil {
		return nil, nil, d.notApplied("subscribe", key, err)
	}
	wch, wctx, wcancel, err := d.watch(ctx, key, clientv3.WithRev(snap.Header.Revision+1))
	if err != nil {
		return nil, nil, err
	}
	ek, unpin := d.pinName(key, dig)
	defer unpin()
	s := &handoffSub{d: d, gk: grantKey{ek, dig}, turns: make(chan driver.Turn, 1), done: make(chan struct{})}
	queue := make(map[string]int64, len(snap.Kvs))
	for _, kv := range snap.Kvs {
		queue[string(kv.Key)] = kv.CreateRevision
	}
	s.look(queue, false)
	d.mu.Lock()
	d.handoffs[s.gk] = s
	d.mu.Unlock()
	if err := d.goWatch(wcancel, func() { s.loop(wctx, wch, queue) }); err != nil {
		s.unregister()
		return nil, nil, fmt.Errorf("etcddriver: subscribe %q: %w", key, err)
	}
	return s.turns, func() { wcancel(); <-s.done; s.end() }, nil
}

// handoffSub is a lock waiter's subscription (SubscribeHandoff).
type handoffSub struct {
	d     *locker
	gk    grantKey // the token's entry and digest
	turns chan driver.Turn
	done  chan struct{} // closed when loop returns

	mu sync.Mutex
	// attempt is the last queued attempt that renewed the entry's lease,
	// and attemptRev the entry's create revision then.
	attempt    uint64
	attemptRev int64
	// headRev is the create revision of the entry when it was seen first
	// before any queued attempt renewed it (a plain wake-up was sent).
	headRev int64
	// seenRev is the create revision of the token's entry as the watch
	// last saw it (0: none), and first whether it was the first entry.
	seenRev   int64
	first     bool
	delivered bool // a Turn with Granted was sent
	acquired  bool // a queued attempt's reply returned the key
	ended     bool // cancel was called: nothing more is sent
}

// loop keeps queue (entry key → create revision) up to date from the
// watch wch and sends the waiter its turns.
func (s *handoffSub) loop(wctx context.Context, wch clientv3.WatchChan, queue map[string]int64) {
	defer close(s.done)
	for {
		select {
		case <-wctx.Done():
			return
		case r, ok := <-wch:
			if !ok || r.Canceled {
				// The watch is over (etcd cancelled it: the
				// revision it resumed from was compacted): the
				// waiter goes on with its attempts and their
				// backoff, which make their transaction again, as
				// the view of the queue stopped here (see
				// queuedRenewal).
				s.mu.Lock()
				s.seenRev, s.first = 0, false
				s.wake()
				s.mu.Unlock()
				return
			}
			deleted := false
			for _, ev := range r.Events {
				if ev.Type == mvccpb.DELETE {
					delete(queue, string(ev.Kv.Key))
					deleted = true
				} else {
					queue[string(ev.Kv.Key)] = ev.Kv.CreateRevision
				}
			}
			s.look(queue, deleted)
		}
	}
}

// look notes where the token's entry is in queue and, after a delete,
// sends the waiter its turn if its entry is now the first.
func (s *handoffSub) look(queue map[string]int64, deleted bool) {
	mine, ok := queue[s.gk.ek]
	first := ok
	for _, rev := range queue {
		first = first && rev >= mine
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seenRev, s.first = mine, first
	switch {
	case !deleted || ok && !first:
		return
	case !ok:
		s.wake()
		return
	}
	if s.attempt > 0 && s.attemptRev == mine {
		s.grant(mine)
		return
	}
	s.headRev = mine
	s.wake()
}

// wake sends a plain wake-up, unless one is pending or the waiter has
// the key. Under mu.
func (s *handoffSub) wake() {
	if s.ended || s.delivered || s.acquired {
		return
	}
	select {
	case s.turns <- driver.Turn{}:
	default:
	}
}

// grant sends the Turn of the grant of the entry of create revision rev
// on s.attempt, in place of a pending plain wake-up. Under mu.
func (s *handoffSub) grant(rev int64) {
	if s.ended || s.delivered || s.acquired {
		return
	}
	select {
	case <-s.turns:
	default:
	}
	s.turns <- driver.Turn{Granted: true, Attempt: s.attempt, Fence: uint64(rev)}
	s.delivered = true
	s.d.setQueued(s.gk.ek, s.gk.digest, false)
}

// noteQueued records the reply of a queued attempt of the token of dig
// on ek: the key acquired, or the entry of create revision rev renewed by
// attempt. An entry the subscription already saw first gets its grant
// now.
func (d *locker) noteQueued(ek, dig string, attempt uint64, rev int64, acquired bool) {
	d.mu.Lock()
	s := d.handoffs[grantKey{ek, dig}]
	d.mu.Unlock()
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case acquired:
		s.acquired = true
	case attempt > 0:
		s.attempt, s.attemptRev = attempt, rev
		if s.headRev == rev {
			s.grant(rev)
		}
	}
}

func (s *handoffSub) unregister() {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if s.d.handoffs[s.gk] == s {
		delete(s.d.handoffs, s.gk)
		s.d.gcGrant(s.gk)
	}
}

// end is the rest of cancel, once the watch loop returned.
func (s *handoffSub) end() {
	s.unregister()
	s.mu.Lock()
	s.ended = true
	keep := s.delivered || s.acquired
	s.mu.Unlock()
	if keep {
		return
	}
	d := s.d
	ctx, cancel := d.bound(context.Background())
	defer cancel()
	// The name may serve another token by now: the delete checks that
	// the entry is still the token's.
	resp, err := d.client.Txn(ctx).
		If(digestIs(s.gk.ek, s.gk.digest)...).
		Then(clientv3.OpDelete(s.gk.ek, clientv3.WithPrevKV())).
		Commit()
	if err != nil {
		// Perhaps the holder: the caller releases the token.
		select {
		case <-s.turns:
		default:
		}
		s.turns <- driver.Turn{Granted: true}
		return
	}
	var prev *mvccpb.KeyValue
	if resp.Succeeded {
		prev = resp.Responses[0].GetResponseDeleteRange().PrevKvs[0]
	}
	d.deleted(ctx, s.gk.ek, s.gk.digest, prev)
}
