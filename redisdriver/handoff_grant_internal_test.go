package redisdriver

import (
	"testing"

	"github.com/dlock-go/dlock/driver"
)

// TestWaiterGrantNeverDropped: a handoff waiter's channel holds one turn;
// a grant takes the place of a plain wake-up still unread, and a second
// grant (which the scripts never send: one grant per token at a time) is
// refused, so that the notifier releases it, rather than replacing the
// first.
func TestWaiterGrantNeverDropped(t *testing.T) {
	w := &waiter{turns: make(chan driver.Turn, 1), token: "t"}
	w.Wake()
	first := driver.Turn{Granted: true, Attempt: 3, Fence: 7}
	if !w.grant(first) {
		t.Fatal("a grant was refused over a plain wake-up")
	}
	w.Wake() // merged: a grant waits
	if w.grant(driver.Turn{Granted: true, Attempt: 4, Fence: 8}) {
		t.Fatal("a second grant was accepted: one of the two is lost")
	}
	if got := <-w.turns; got != first {
		t.Fatalf("channel holds %+v, want the first grant %+v", got, first)
	}
	if len(w.turns) != 0 {
		t.Fatal("more than one turn buffered")
	}
	plain := &waiter{plain: make(chan struct{}, 1)}
	if plain.grant(first) {
		t.Fatal("a plain subscription took a grant it cannot report")
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
