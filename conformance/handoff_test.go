package conformance

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/dlock-go/dlock/driver"
)

// handoffCases are the cases of driver.Handoff, skipped for drivers
// without it.
var handoffCases = []string{"HandoffInOrder", "HandoffFirstComeLongWait", "HandoffLeaseFromAttempt", "HandoffSkipsCancelled", "HandoffUnreadGrantReleased", "HandoffNotToAttemptZero"}

// handoffFlaw is what a broken emuHandoff gets wrong.
type handoffFlaw int

const (
	flawless          handoffFlaw = iota
	lifo                          // serves the last queued waiter first
	grantsCancelled               // hands the key to waiters that left
	halvesGrantTTL                // grants half the queued attempt's TTL
	dropsLateGrant                // delivers grants late, and drops, unreleased, those whose waiter left
	grantsAttemptZero             // hands the key to waiters queued with Attempt 0
	earliestDeadline              // serves the waiter whose next attempt is due first
)

// notifyInspect is a driver that notifies and inspects, whose other
// capabilities (Handoff among them) an emuHandoff hides.
type notifyInspect interface {
	driver.Locker
	driver.Notifier
	driver.Inspector
}

// emuHandoff hands off over a client that only notifies: its clients share
// a queue of their own (emuState), and a Release followed by an Acquire of
// the waiter's token stands for the backend's atomic handoff (no other
// client takes the key in between in the cases). Each flaw makes it break
// one rule of driver.Handoff.
type emuHandoff struct {
	notifyInspect
	st   *emuState
	flaw handoffFlaw
}

type emuState struct {
	mu    sync.Mutex
	queue map[string][]emuQueued        // by key, first come first
	subs  map[string]map[string]*emuSub // by key and token
	late  sync.WaitGroup                // grants delivered late (dropsLateGrant)
}

type emuQueued struct {
	req      driver.Request
	attempt  uint64
	deadline time.Time // of the waiter's next attempt (earliestDeadline)
}

type emuSub struct {
	turns chan driver.Turn
	gone  bool
}

func newEmuHandoff(d driver.Locker, shared *sync.Map, flaw handoffFlaw) driver.Locker {
	st, _ := shared.LoadOrStore("handoff", &emuState{queue: map[string][]emuQueued{}, subs: map[string]map[string]*emuSub{}})
	return emuHandoff{d.(notifyInspect), st.(*emuState), flaw}
}

func (e emuHandoff) AcquireQueued(ctx context.Context, req driver.Request, at driver.Queued) (driver.Result, error) {
	res, err := e.notifyInspect.Acquire(ctx, req)
	if err != nil || res.Acquired || at.Wait == 0 || at.Attempt == 0 && e.flaw != grantsAttemptZero {
		return res, err
	}
	e.st.mu.Lock()
	defer e.st.mu.Unlock()
	q := e.st.queue[req.Key]
	deadline := time.Now().Add(at.Wait)
	if i := slices.IndexFunc(q, func(q emuQueued) bool { return q.req.Token == req.Token }); i >= 0 {
		q[i].req, q[i].attempt = req, at.Attempt
		if deadline.After(q[i].deadline) {
			q[i].deadline = deadline
		}
	} else {
		e.st.queue[req.Key] = append(q, emuQueued{req, at.Attempt, deadline})
	}
	return res, nil
}

func (e emuHandoff) Release(ctx context.Context, key, token string) error {
	if err := e.notifyInspect.Release(ctx, key, token); err != nil {
		return err
	}
	e.st.mu.Lock()
	defer e.st.mu.Unlock()
	for len(e.st.queue[key]) > 0 {
		q := e.st.queue[key]
		i := 0
		switch e.flaw {
		case lifo:
			i = len(q) - 1
		case earliestDeadline:
			for j := range q {
				if q[j].deadline.Before(q[i].deadline) {
					i = j
				}
			}
		}
		req, attempt := q[i].req, q[i].attempt
		e.st.queue[key] = slices.Delete(q, i, i+1)
		sub := e.st.subs[key][req.Token]
		if (sub == nil || sub.gone) && e.flaw != grantsCancelled {
			continue
		}
		grant := driver.Request{Key: key, Token: req.Token, TTL: req.TTL, Owner: req.Owner}
		if e.flaw == halvesGrantTTL {
			grant.TTL /= 2
		}
		res, err := e.notifyInspect.Acquire(ctx, grant)
		if err != nil || !res.Acquired {
			break
		}
		t := driver.Turn{Granted: true, Attempt: attempt, Fence: res.Fence}
		switch {
		case sub == nil || sub.gone:
		case e.flaw == dropsLateGrant:
			e.st.late.Go(func() {
				time.Sleep(100 * time.Millisecond) // a slow notification
				e.st.mu.Lock()
				defer e.st.mu.Unlock()
				if !sub.gone {
					sub.grant(t)
				}
			})
		default:
			sub.grant(t)
		}
		return nil
	}
	for _, sub := range e.st.subs[key] {
		select {
		case sub.turns <- driver.Turn{}:
		default:
		}
	}
	return nil
}

// grant delivers t in place of a pending wake. st.mu must be held.
func (sub *emuSub) grant(t driver.Turn) {
	select {
	case <-sub.turns:
	default:
	}
	sub.turns <- t
}

func (e emuHandoff) SubscribeHandoff(_ context.Context, key, token string) (<-chan driver.Turn, func(), error) {
	e.st.mu.Lock()
	defer e.st.mu.Unlock()
	sub := &emuSub{turns: make(chan driver.Turn, 1)}
	if e.st.subs[key] == nil {
		e.st.subs[key] = map[string]*emuSub{}
	}
	e.st.subs[key][token] = sub
	var once sync.Once
	return sub.turns, func() {
		once.Do(func() {
			e.st.mu.Lock()
			defer e.st.mu.Unlock()
			sub.gone = true
			delete(e.st.subs[key], token)
		})
	}, nil
}

// Close waits for late grants, so that no goroutine outlives the case.
func (e emuHandoff) Close() error {
	e.st.late.Wait()
	return e.notifyInspect.Close()
}
