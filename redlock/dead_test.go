package redlock_test

import (
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redlock"
)

// fastBound is how long each operation may take with one node refused:
// well under the node timeout openURL sets (4s), which is what every
// operation took when the dead node's client spent the round on dial
// retries, and generous for a loaded machine (a 400ms bound failed at a
// load average of 14 on two cores).
const fastBound = 1500 * time.Millisecond

// openURL opens a redlock:// driver over hosts, with a node timeout of
// 4s, far above fastBound.
func openURL(t *testing.T, hosts []string) driver.Locker {
	t.Helper()
	u, err := url.Parse("redlock://" + strings.Join(hosts, ",") + "/0?node_timeout=4s")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d, err := redlock.Open(t.Context(), u)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if took := time.Since(start); took > fastBound {
		t.Errorf("Open took %v with one node down; want under %v", took, fastBound)
	}
	return d
}

// timed runs op and fails t if it took longer than fastBound.
func timed(t *testing.T, name string, op func() error) error {
	t.Helper()
	start := time.Now()
	err := op()
	if took := time.Since(start); took > fastBound {
		t.Errorf("%s took %v with one node down; want under %v (the majority answers at once)", name, took, fastBound)
	}
	return err
}

// TestDeadNodeMajoritySpeed: with one of three nodes down (refused from
// the start, or killed after Open), Open, Acquire, Release, Inspect and
// Close return at the majority's speed, not after the dead node's timeout.
func TestDeadNodeMajoritySpeed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		hosts func(t *testing.T) (hosts []string, kill func())
	}{
		{"Refused", func(t *testing.T) ([]string, func()) {
			s := startRedis(t, 2)
			return append(s.addrs(), freeAddrs(t, 1)...), func() {}
		}},
		{"Killed", func(t *testing.T) ([]string, func()) {
			s := startRedis(t, 3)
			return s.addrs(), func() { s[1].Kill(t) }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			hosts, kill := tc.hosts(t)
			d := openURL(t, hosts)
			kill()
			for round := range 3 { // also once the dead node's pool has given up dialling
				req := driver.Request{Key: "dead-node", Token: "tok-" + string(rune('a'+round)), TTL: 15 * time.Second, Owner: "me"}
				var res driver.Result
				err := timed(t, "Acquire", func() (err error) { res, err = d.Acquire(ctx, req); return err })
				if err != nil || !res.Acquired {
					t.Fatalf("round %d: Acquire = %+v, %v; want granted by the two live nodes", round, res, err)
				}
				err = timed(t, "Inspect", func() (err error) {
					h, ok, err := d.(driver.Inspector).Inspect(ctx, req.Key)
					if err == nil && (!ok || h.Owner != "me") {
						t.Errorf("round %d: Inspect = %+v, %v; want held by me", round, h, ok)
					}
					return err
				})
				if err != nil {
					t.Fatalf("round %d: Inspect: %v", round, err)
				}
				if err := timed(t, "Release", func() error { return d.Release(ctx, req.Key, req.Token) }); err != nil {
					t.Fatalf("round %d: Release: %v", round, err)
				}
			}
			if err := timed(t, "Close", d.Close); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

// TestDeadNodeNamedRefused: when nodes die, the quorum error names each
// dead node by index and address and gives its real cause, "connection
// refused", not the node timeout's "context deadline exceeded", and comes
// at once.
func TestDeadNodeNamedRefused(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := startRedis(t, 2)
	refused := freeAddrs(t, 1)[0]
	d := openURL(t, append(s.addrs(), refused))
	defer d.Close()
	req := driver.Request{Key: "named", Token: "tok", TTL: 15 * time.Second}
	if res, err := d.Acquire(ctx, req); err != nil || !res.Acquired {
		t.Fatalf("Acquire = %+v, %v", res, err)
	}
	s[1].Kill(t)
	check := func(op string, err error) {
		t.Helper()
		var qe *redlock.QuorumError
		if !errors.As(err, &qe) {
			t.Fatalf("%s: %v; want a *redlock.QuorumError", op, err)
		}
		if !errors.Is(err, driver.ErrUnavailable) {
			t.Errorf("%s: %v; want it to wrap driver.ErrUnavailable", op, err)
		}
		msg := err.Error()
		for _, node := range []string{"node 1 (" + s[1].Addr() + ")", "node 2 (" + refused + ")"} {
			i := strings.Index(msg, node+": ")
			if i < 0 {
				t.Errorf("%s: %q does not name %s", op, msg, node)
				continue
			}
			cause := msg[i:]
			if j := strings.Index(cause, "; node"); j >= 0 {
				cause = cause[:j]
			}
			if !strings.Contains(cause, "connection refused") {
				t.Errorf("%s: the cause given for %s is %q; want connection refused", op, node, cause)
			}
		}
		if strings.Contains(msg, "deadline exceeded") {
			t.Errorf("%s: %q blames the node timeout", op, msg)
		}
	}
	check("Inspect", timed(t, "Inspect", func() error {
		_, _, err := d.(driver.Inspector).Inspect(ctx, req.Key)
		return err
	}))
	check("Release", timed(t, "Release", func() error { return d.Release(ctx, req.Key, req.Token) }))
	check("Acquire", timed(t, "Acquire", func() error {
		_, err := d.Acquire(ctx, driver.Request{Key: "named-2", Token: "tok2", TTL: 15 * time.Second})
		return err
	}))
}

// TestCloseBoundsLateCalls: Close waits for a node still hung in the
// acquire that returned with the majority (its answer decides whether the
// node must be released), but for the node timeout at most: then it ends
// the call instead of waiting for the call's own deadline.
func TestCloseBoundsLateCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newMemCluster(3)
		const nodeTimeout = 5 * time.Second
		d, fs := c.newDriver(t, &redlock.Options{NodeTimeout: nodeTimeout, DisableFencing: true})
		fs[2].Partition()
		req := driver.Request{Key: "k", Token: rand(), TTL: time.Minute}
		if res, err := d.Acquire(t.Context(), req); err != nil || !res.Acquired {
			t.Fatalf("Acquire = %+v, %v", res, err)
		}
		start := time.Now()
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if took := time.Since(start); took != nodeTimeout {
			t.Errorf("Close took %v while a node hung in a late acquire; want the node timeout, %v, then the call ended", took, nodeTimeout)
		}
	})
}

// TestInspectAtMajoritySpeed: with a node hung, Inspect returns once the
// others decide, held or free, not after the hung node's timeout.
func TestInspectAtMajoritySpeed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newMemCluster(3)
		d, fs := c.driver(t, &redlock.Options{NodeTimeout: 5 * time.Second, DisableFencing: true})
		req := driver.Request{Key: "k", Token: rand(), TTL: time.Minute, Owner: "me"}
		if res, err := d.Acquire(t.Context(), req); err != nil || !res.Acquired {
			t.Fatalf("Acquire = %+v, %v", res, err)
		}
		synctest.Wait() // every node's grant is in
		fs[1].Partition()
		for _, key := range []string{"k", "free"} {
			start := time.Now()
			h, held, err := d.(driver.Inspector).Inspect(t.Context(), key)
			if err != nil || held != (key == "k") || held && h.Owner != "me" {
				t.Errorf("Inspect(%q) = %+v, %v, %v", key, h, held, err)
			}
			if took := time.Since(start); took > time.Millisecond {
				t.Errorf("Inspect(%q) took %v with one node hung; want the majority's answer at once", key, took)
			}
		}
	})
}

// TestOpenAtMajoritySpeed: with one node that accepts connections but
// never answers, Open returns once the two others passed their check,
// not after the hung node's check timeout (four node timeouts), and
// Close ends the hung check at once.
func TestOpenAtMajoritySpeed(t *testing.T) {
	t.Parallel()
	hung, err := net.Listen("tcp", "127.0.0.1:0") // the kernel accepts; nothing answers
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	d := openURL(t, append(startRedis(t, 2).addrs(), hung.Addr().String()))
	if err := timed(t, "Close", d.Close); err != nil {
		t.Errorf("Close: %v", err)
	}
}
