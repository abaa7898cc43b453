package redisdriver

import (
	"testing"

	"github.com/dlock-go/dlock/driver"
)

// TestWaiterGrantTakesUnreadPlace: a handoff waiter's channel holds one
// turn; a grant takes the place of a plain wake-up still unread, a plain
// wake-up never takes a grant's, and a later grant takes an earlier one's
// (which has ended: a key is granted only when free), so that the channel
// holds the grant that stands.
func TestWaiterGrantTakesUnreadPlace(t *testing.T) {
	w := &waiter{turns: make(chan driver.Turn, 1), token: "t"}
	w.Wake()
	first := driver.Turn{Granted: true, Attempt: 3, Fence: 7}
	w.grant(first)
	w.Wake() // merged: a grant waits
	if got := <-w.turns; got != first {
		t.Fatalf("channel holds %+v, want the grant %+v over the wake-ups", got, first)
	}
	w.grant(first)
	second := driver.Turn{Granted: true, Attempt: 4, Fence: 8}
	w.grant(second)
	if got := <-w.turns; got != second {
		t.Fatalf("channel holds %+v, want the later grant %+v", got, second)
	}
	if len(w.turns) != 0 || !w.granted {
		t.Fatalf("%d turns buffered, granted %v; want 0, true", len(w.turns), w.granted)
	}
}

// TestParseGrant: the payload of a grant, and plain wake-ups.
func TestParseGrant(t *testing.T) {
	for payload, want := range map[string]driver.Turn{
		"grant 1 1700000000000000": {Granted: true, Attempt: 1, Fence: 1700000000000000},
		"grant 18 5":               {Granted: true, Attempt: 18, Fence: 5},
		"":                         {},
		"grant x 5":                {},
		"grant 1":                  {},
	} {
		got, ok := parseGrant(payload)
		if got != want || ok != want.Granted {
			t.Errorf("parseGrant(%q) = %+v, %v; want %+v", payload, got, ok, want)
		}
	}
}
