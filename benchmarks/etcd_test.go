package main

import (
	"context"
	"testing"

	"github.com/dlock-go/dlock/etcddriver/etcdtest"
)

// TestEtcdPairsOnce takes and releases a key once with each library of
// the etcd section, on an etcd member of its own, and checks that an
// attempt on a held key by another instance (another process's, in the
// scenarios; concurrency.Mutex lets its own session in again) is busy.
func TestEtcdPairsOnce(t *testing.T) {
	c := etcdtest.Start(t, 1)
	e := env{etcd: c.Endpoints()[0]}
	ctx := context.Background()
	for _, s := range etcdLibs() {
		l, err := s.open(e)
		if err != nil {
			t.Fatalf("%s: %v", s.label(), err)
		}
		l2, err := s.open(e)
		if err != nil {
			t.Fatalf("%s: %v", s.label(), err)
		}
		key := "test:" + benchName(s)
		h, err := l.TryLock(ctx, key)
		if err != nil {
			t.Fatalf("%s: try: %v", s.label(), err)
		}
		if _, err := l2.TryLock(ctx, key); err != errBusy {
			t.Errorf("%s: second try: %v, want errBusy", s.label(), err)
		}
		if err := h.Release(ctx); err != nil {
			t.Errorf("%s: release: %v", s.label(), err)
		}
		h, err = l.Lock(ctx, key)
		if err != nil {
			t.Fatalf("%s: lock after release: %v", s.label(), err)
		}
		if err := h.Release(ctx); err != nil {
			t.Errorf("%s: release: %v", s.label(), err)
		}
		for _, x := range []lib{l, l2} {
			if err := x.Close(); err != nil {
				t.Errorf("%s: close: %v", s.label(), err)
			}
		}
	}
}

// TestFairness checks the handoff's fairness figures on a made-up block
// of three processes: process 0 holds, 1 and 2 wait (2 asked first); the
// key goes to 1 (not first come, first served), then to 2 with only 0
// waiting behind it.
func TestFairness(t *testing.T) {
	holds := []hold{
		{proc: 0, w: 0, a: 10, rc: 20, rr: 21},
		{proc: 1, w: 15, a: 25, rc: 30, rr: 31},
		{proc: 2, w: 12, a: 35, rc: 40, rr: 41},
		{proc: 0, w: 22, a: 45, rc: 50, rr: 51},
	}
	var hs HandoffSample
	fairness(&hs, holds, 3)
	// At the first release 1 and 2 wait, 2 first: the grant to 1 is not
	// FIFO. At the second, 2 and 0 wait, 2 first: FIFO. At the third
	// only 0 waits: no choice.
	if hs.FIFOShare != 0.5 {
		t.Errorf("FIFO share %v, want 0.5", hs.FIFOShare)
	}
	if hs.GrantsMinMax != 0.5 {
		t.Errorf("grants min/max %v, want 0.5 (1 of 2)", hs.GrantsMinMax)
	}
	if want := 0.023; hs.WaitP99us != want {
		t.Errorf("wait p99 %v µs, want %v (23 ns)", hs.WaitP99us, want)
	}
}
