package etcddriver_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
)

// TestQueuedUndoOverSlowLink makes, through a driver whose client spreads
// its calls over three members, one behind a link that delays requests by
// 300 ms, what a dlock waiter that gives up makes: a queued attempt whose
// caller gave up (outcome unknown), the undo of its token (a release that
// gives up too, ReleaseTimeout short), the cancel of its subscription;
// then the driver's next token takes the key, freed by its holder. Once
// the slow link delivered everything, another driver must find the key
// held: the undo's revoke of the attempt's lease, landing late, must not
// delete the next token's entry (the subscription's cancel deleted the
// waiter's entry and pooled that lease, which the next token took).
func TestQueuedUndoOverSlowLink(t *testing.T) {
	c := etcdtest.Start(t, 3)
	ctx := testCtx(t)
	ms := c.Members()
	slow := newSlowLink(t, hostPort(ms[0]), 300*time.Millisecond)
	d := etcddriver.NewDriver(c.Client(t, "http://"+slow.addr(), ms[1].ClientURL, ms[2].ClientURL), nil)
	h := d.(driver.Handoff)
	other := etcddriver.NewDriver(c.Client(t, ms[1].ClientURL), nil)
	t.Cleanup(func() { d.Close(); other.Close() })
	const rounds = 18
	ttl := 10 * time.Second
	undone := 0
	for i := range rounds {
		key := fmt.Sprintf("attack3/queued-undo/%d", i)
		hold, err := other.Acquire(ctx, driverRequest(key, "H", ttl))
		if err != nil || !hold.Acquired {
			t.Fatalf("round %d: Acquire(H) = %+v, %v", i, hold, err)
		}
		tok := fmt.Sprintf("T%d", i)
		turns, cancelSub, err := h.SubscribeHandoff(ctx, key, tok)
		if err != nil {
			t.Fatalf("round %d: SubscribeHandoff = %v", i, err)
		}
		if res, err := h.AcquireQueued(ctx, driverRequest(key, tok, ttl), driver.Queued{Wait: time.Second, Attempt: 1}); err != nil || res.Acquired {
			t.Fatalf("round %d: AcquireQueued 1 = %+v, %v; want queued", i, res, err)
		}
		actx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
		_, aerr := h.AcquireQueued(actx, driverRequest(key, tok, ttl), driver.Queued{Wait: time.Second, Attempt: 2})
		cancel()
		if driver.OutcomeUnknown(aerr) {
			// Calls of the Locker's other work, which move the
			// undo's call to another member (the client's balancer
			// takes them in turn).
			for range i / 3 % 3 {
				d.(driver.Inspector).Inspect(ctx, key)
			}
			rctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
			rerr := d.Release(rctx, key, tok)
			cancel()
			if driver.OutcomeUnknown(rerr) {
				undone++
			}
		}
		cancelSub()
		select {
		case turn := <-turns:
			if turn.Granted {
				d.Release(ctx, key, tok)
			}
		default:
		}
		if _, err := other.Release(ctx, key, "H"), error(nil); err != nil {
			t.Fatal(err)
		}
		u := fmt.Sprintf("U%d", i)
		got, err := d.Acquire(ctx, driverRequest(key, u, ttl))
		slow.drained(ctx)
		if err == nil && got.Acquired {
			if res, err := other.Acquire(ctx, driverRequest(key, "X", ttl)); err == nil && res.Acquired {
				t.Fatalf("round %d: another driver got the key (fence %d) while %s holds it (fence %d): two holders", i, res.Fence, u, got.Fence)
			}
		}
		d.Release(ctx, key, u)
	}
	if undone == 0 {
		t.Errorf("no round had a queued attempt and its undo both of unknown outcome: the test proved nothing")
	}
	t.Logf("%d of %d rounds had a queued attempt and its undo both of unknown outcome", undone, rounds)
}
