package memdriver_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
	"github.com/dlock-go/dlock/redlock"
)

// subscribeHandoff subscribes token to key on d until the test ends.
func subscribeHandoff(t *testing.T, d driver.Locker, key, token string) <-chan driver.Turn {
	t.Helper()
	turns, cancel, err := d.(driver.Handoff).SubscribeHandoff(t.Context(), key, token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return turns
}

// queue makes a busy attempt of token on key, queued with wait and
// attempt, or, with a floor, a quorum node's attempt, which is not queued.
func queue(t *testing.T, d driver.Locker, key, token string, wait time.Duration, attempt, floor uint64) {
	t.Helper()
	req := driver.Request{Key: key, Token: token, TTL: time.Minute}
	acquire := func() (driver.Result, error) {
		return d.(driver.Handoff).AcquireQueued(t.Context(), req, driver.Queued{Wait: wait, Attempt: attempt})
	}
	if floor != 0 {
		acquire = func() (driver.Result, error) { return d.(redlock.FloorAcquirer).AcquireFloor(t.Context(), req, floor) }
	}
	res, err := acquire()
	if err != nil || res.Acquired {
		t.Fatalf("a waiter's Acquire = %+v, %v; want busy", res, err)
	}
}

// TestHandoffPassesOver: a release passes over the waiters it must not
// hand the key to (Wait run out, an attempt with a fence floor, which is
// not queued) and grants the next; a
// grant takes the place of a wake-up still unread.
func TestHandoffPassesOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newClient(t, memdriver.NewStore())
		late := subscribeHandoff(t, d, "k", "late")
		floored := subscribeHandoff(t, d, "k", "floored")
		next := subscribeHandoff(t, d, "k", "next")
		// A release with nobody queued wakes them all; next leaves its
		// wake-up unread.
		mustAcquire(t, d, "k", "h0", time.Hour)
		if err := d.Release(t.Context(), "k", "h0"); err != nil {
			t.Fatal(err)
		}
		for _, c := range []<-chan driver.Turn{late, floored} {
			if tn := <-c; tn.Granted {
				t.Fatalf("a release with nobody queued sent %+v; want a wake-up", tn)
			}
		}

		mustAcquire(t, d, "k", "h", time.Hour)
		queue(t, d, "k", "late", time.Second, 1, 0)
		queue(t, d, "k", "floored", time.Hour, 1, 1000)
		queue(t, d, "k", "next", time.Hour, 3, 0)
		time.Sleep(time.Second) // late's Wait runs out
		if err := d.Release(t.Context(), "k", "h"); err != nil {
			t.Fatal(err)
		}
		select {
		case tn := <-next:
			if !tn.Granted || tn.Attempt != 3 {
				t.Fatalf("next's Turn = %+v; want granted on attempt 3", tn)
			}
		default:
			t.Fatal("next got no Turn")
		}
		for name, c := range map[string]<-chan driver.Turn{"late": late, "floored": floored} {
			select {
			case tn := <-c:
				t.Errorf("%s got %+v; want nothing: the key went to next", name, tn)
			default:
			}
		}
		if err := d.Release(t.Context(), "k", "next"); err != nil {
			t.Fatalf("Release by next = %v; want nil: the grant is its", err)
		}
	})
}
