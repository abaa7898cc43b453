package etcdtest

import (
	"net"
	"testing"
)

// TestStartAfterPortTaken: a port chosen free and taken by another
// process before the member binds it (another test's server, as
// happened in CI's parallel packages) fails that start; Start then
// starts the cluster on other ports instead of failing the test.
func TestStartAfterPortTaken(t *testing.T) {
	if _, err := Binary(); err != nil {
		if Required() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	real := freePort
	t.Cleanup(func() { freePort = real })
	handed := false
	freePort = func() (int, error) {
		if !handed {
			handed = true
			return taken.Addr().(*net.TCPAddr).Port, nil
		}
		return real()
	}
	c := Start(t, 1)
	if !handed {
		t.Fatal("the taken port was never handed out")
	}
	if got := c.Members()[0].ClientURL; got == "http://"+taken.Addr().String() {
		t.Errorf("member's client URL %s is the taken port", got)
	}
}
