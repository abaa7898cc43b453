package linearize

import (
	"context"
	"strings"
	"testing"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
	"github.com/dlock-go/dlock/redlock"
)

// TestCheckerQuorum checks the checker on Redlock over three memdriver
// stores: honest nodes pass, though their split votes and the minorities
// their undos hold after the quorum's calls returned make attempts busy
// with nobody holding the key; nodes that answer busy on a free key, which
// no token holds on any node, make the quorum answer busy where nothing
// explains it, and the run must be rejected.
func TestCheckerQuorum(t *testing.T) {
	for _, tt := range []struct {
		name string
		node func(d driver.Locker) driver.Locker
		// reject: the history must be rejected for a busy answer.
		reject bool
	}{
		{"Honest", func(d driver.Locker) driver.Locker { return d }, false},
		// Every node answers the attempts of half the tokens busy
		// without asking its store.
		{"NodesFalselyBusy", func(d driver.Locker) driver.Locker { return &falselyBusy{passThrough{d}} }, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep := Run(t, memQuorumBackend(t, tt.node), brokenRun)
			for _, why := range rep.Illegal {
				t.Logf("rejected: %.300s", why)
			}
			switch {
			case !tt.reject && rep.Failed():
				t.Errorf("the run failed over honest Redlock nodes: %v %v %v %v", rep.Illegal, rep.TimedOut, rep.Errors, rep.MajorityLeftovers())
			case tt.reject && !busyRejected(rep):
				t.Errorf("porcupine accepted the history of a quorum whose nodes answer busy on free keys: %v", rep.Counts)
			}
		})
	}
}

// busyRejected reports whether a key's history was rejected at a busy
// attempt.
func busyRejected(rep *Report) bool {
	for _, why := range rep.Illegal {
		if strings.Contains(why, "→ busy [") {
			return true
		}
	}
	return false
}

// memQuorumBackend is Redlock over three memdriver stores, each client's
// node drivers made by wrap.
func memQuorumBackend(t *testing.T, wrap func(driver.Locker) driver.Locker) Backend {
	stores := make([]*memdriver.Store, 3)
	var probes []driver.Inspector
	for i := range stores {
		stores[i] = memdriver.NewStore()
		probe := stores[i].Driver()
		t.Cleanup(func() { probe.Close() })
		probes = append(probes, probe.(driver.Inspector))
	}
	return Backend{
		NewQuorum: func(t *testing.T, node func(int, driver.Locker) driver.Locker) driver.Locker {
			nodes := make([]driver.Locker, len(stores))
			for i, s := range stores {
				nodes[i] = node(i, wrap(s.Driver()))
			}
			d, err := redlock.NewDriver(nodes, nil)
			if err != nil {
				t.Error(err)
			}
			return d
		},
		Held: HeldOn(probes...),
	}
}

// falselyBusy answers the attempts of tokens whose last byte is even busy
// without making them.
type falselyBusy struct{ passThrough }

func lie(token string) bool { return token[len(token)-1]%2 == 0 }

func (d *falselyBusy) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	if lie(req.Token) {
		return driver.Result{}, nil
	}
	return d.Locker.Acquire(ctx, req)
}

func (d *falselyBusy) AcquireFloor(ctx context.Context, req driver.Request, floor uint64) (driver.Result, error) {
	if lie(req.Token) {
		return driver.Result{}, nil
	}
	return d.Locker.(redlock.FloorAcquirer).AcquireFloor(ctx, req, floor)
}

func (d *falselyBusy) RaiseFence(ctx context.Context, key, token string, fence uint64) error {
	return d.Locker.(driver.FenceRaiser).RaiseFence(ctx, key, token, fence)
}
