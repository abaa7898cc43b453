package etcddriver_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// namesSince returns the distinct etcd keys ever written under key's
// entries from revision from on: each stays in etcd's index as a
// tombstone after its delete, until the store is compacted.
func namesSince(t *testing.T, cl *clientv3.Client, key string, from int64) map[string]bool {
	t.Helper()
	lo, hi := etcddriver.DefaultPrefix+key+"\x00", etcddriver.DefaultPrefix+key+"\x01"
	now, err := cl.Get(testCtx(t), "any")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for rev := from; rev <= now.Header.Revision; rev++ {
		r, err := cl.Get(testCtx(t), lo, clientv3.WithRange(hi), clientv3.WithRev(rev), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range r.Kvs {
			names[string(kv.Key)] = true
		}
	}
	return names
}

// TestEntryNamesReused makes many grants of distinct tokens on one key,
// a holder and a waiter at a time, and a slot of a semaphore: the names
// of their entries must be reused, as many as the entries that lived at
// once, not one per token. Every name ever written stays in etcd's index
// until compaction, and every attempt's compare over the key's entries
// walks all of them (with a name per token, the cost of an attempt grew
// with every grant ever made on the key).
func TestEntryNamesReused(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	cl := c.Client(t)
	d := etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d.Close() })
	start, err := cl.Get(ctx, "any")
	if err != nil {
		t.Fatal(err)
	}
	const key, pairs, ttl = "names/k", 20, 30 * time.Second
	h := d.(driver.Handoff)
	for i := range pairs {
		holder, waiter := fmt.Sprint("h", i), fmt.Sprint("w", i)
		if res, err := d.Acquire(ctx, driverRequest(key, holder, ttl)); err != nil || !res.Acquired {
			t.Fatalf("pair %d: Acquire = %+v, %v", i, res, err)
		}
		if res, err := h.AcquireQueued(ctx, driverRequest(key, waiter, ttl), driver.Queued{Wait: time.Minute, Attempt: 1}); err != nil || res.Acquired {
			t.Fatalf("pair %d: queued attempt = %+v, %v; want busy", i, res, err)
		}
		if err := d.Release(ctx, key, holder); err != nil {
			t.Fatalf("pair %d: holder's Release = %v", i, err)
		}
		if err := d.Release(ctx, key, waiter); err != nil {
			t.Fatalf("pair %d: first waiter's Release = %v", i, err)
		}
	}
	if names := namesSince(t, cl, key, start.Header.Revision); len(names) > 2 {
		t.Errorf("%d grants to %d tokens wrote %d entry names; want 2 (a holder's and a waiter's, reused)", 2*pairs, 2*pairs, len(names))
	}
	sem := d.(driver.Semaphore)
	const skey = "names/sem"
	for i := range pairs {
		tok := fmt.Sprint("s", i)
		if res, err := sem.AcquireSlot(ctx, driverRequest(skey, tok, ttl), 2); err != nil || !res.Acquired {
			t.Fatalf("slot %d: AcquireSlot = %+v, %v", i, res, err)
		}
		if err := sem.ReleaseSlot(ctx, skey, tok); err != nil {
			t.Fatalf("slot %d: ReleaseSlot = %v", i, err)
		}
	}
	if names := namesSince(t, cl, skey, start.Header.Revision); len(names) != 1 {
		t.Errorf("%d slot grants wrote %d entry names; want 1", pairs, len(names))
	}
}

// TestReleaseLeavesAnotherTokensEntry releases, through a second driver
// that knows the token only from a refresh, a grant whose entry's name
// the first driver has since given to another token: the release must
// report ErrNotHeld and leave the other token's entry.
func TestReleaseLeavesAnotherTokensEntry(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	d1, d2 := etcddriver.NewDriver(c.Client(t), nil), etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d1.Close(); d2.Close() })
	const key, ttl = "names/adopted", 30 * time.Second
	if res, err := d1.Acquire(ctx, driverRequest(key, "a", ttl)); err != nil || !res.Acquired {
		t.Fatalf("Acquire(a) = %+v, %v", res, err)
	}
	// d2 learns a's entry (its name is d1's) from a refresh.
	if err := d2.Refresh(ctx, key, "a", ttl); err != nil {
		t.Fatalf("Refresh(a) through the second driver = %v", err)
	}
	if err := d1.Release(ctx, key, "a"); err != nil {
		t.Fatal(err)
	}
	res, err := d1.Acquire(ctx, driverRequest(key, "b", ttl))
	if err != nil || !res.Acquired {
		t.Fatalf("Acquire(b) = %+v, %v", res, err)
	}
	if err := d2.Release(ctx, key, "a"); !errors.Is(err, driver.ErrNotHeld) {
		t.Errorf("Release(a) through the second driver = %v; want ErrNotHeld", err)
	}
	r, err := etcddriver.TokenEntry(ctx, c.Client(t), etcddriver.DefaultPrefix, key, "b")
	if err != nil || len(r.Kvs) != 1 || r.Kvs[0].CreateRevision != int64(res.Fence) {
		t.Errorf("b's entry after a's release elsewhere = %v, %v; want it, fence %d", r, err, res.Fence)
	}
}

// TestUncertainReleaseOnReusedName releases a token whose one attempt
// had an unknown outcome (its transaction never reached etcd), made
// right after another token's grant on the same key was released by the
// same driver: the attempt took that grant's entry name and its lease,
// both reused, and the release's look at the key just before its revoke
// finds the other token's entry there. The release must not take it for
// the token's: ErrNotHeld (tests/linearize found a release reported ok,
// and so a grant, for a token that never held the key).
func TestUncertainReleaseOnReusedName(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	lc := newLossy(t, c)
	d := etcddriver.NewDriver(lc.Client, nil)
	t.Cleanup(func() { d.Close() })
	const key, ttl = "names/uncertain", 30 * time.Second
	if res, err := d.Acquire(ctx, driverRequest(key, "a", ttl)); err != nil || !res.Acquired {
		t.Fatalf("Acquire(a) = %+v, %v", res, err)
	}
	if err := d.Release(ctx, key, "a"); err != nil {
		t.Fatal(err)
	}
	lc.lose(true, methodTxn)
	_, err := d.Acquire(ctx, driverRequest(key, "b", ttl))
	lc.lose(false)
	if !driver.OutcomeUnknown(err) {
		t.Fatalf("Acquire(b) whose transaction is lost = %v; want an unknown outcome", err)
	}
	if err := d.Release(ctx, key, "b"); !errors.Is(err, driver.ErrNotHeld) {
		t.Errorf("Release(b), whose attempt never reached etcd = %v; want ErrNotHeld", err)
	}
}

// TestSameTokenTwoDrivers acquires a lock and a semaphore slot with one
// token through two drivers (two processes, say), whose entry names
// differ: the second acquire must find the first's entry by the token's
// digest, return its fence, and leave one entry; either driver's release
// frees it.
func TestSameTokenTwoDrivers(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	cl := c.Client(t)
	d1, d2 := etcddriver.NewDriver(c.Client(t), nil), etcddriver.NewDriver(c.Client(t), nil)
	t.Cleanup(func() { d1.Close(); d2.Close() })
	const ttl = 30 * time.Second
	entries := func(key string) int {
		t.Helper()
		r, err := cl.Get(ctx, etcddriver.DefaultPrefix+key+"\x00", clientv3.WithRange(etcddriver.DefaultPrefix+key+"\x01"), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return int(r.Count)
	}
	const lock = "names/two-lock"
	first, err := d1.Acquire(ctx, driverRequest(lock, "tok", ttl))
	if err != nil || !first.Acquired {
		t.Fatalf("Acquire through d1 = %+v, %v", first, err)
	}
	again, err := d2.Acquire(ctx, driverRequest(lock, "tok", ttl))
	if err != nil || !again.Acquired || again.Fence != first.Fence {
		t.Errorf("Acquire of the same token through d2 = %+v, %v; want fence %d", again, err, first.Fence)
	}
	if n := entries(lock); n != 1 {
		t.Errorf("%d entries after two acquires of one token; want 1", n)
	}
	if err := d2.Release(ctx, lock, "tok"); err != nil {
		t.Errorf("Release through d2 = %v", err)
	}
	if n := entries(lock); n != 0 {
		t.Errorf("%d entries after the release; want 0", n)
	}

	const sem = "names/two-sem"
	s1, s2 := d1.(driver.Semaphore), d2.(driver.Semaphore)
	first, err = s1.AcquireSlot(ctx, driverRequest(sem, "tok", ttl), 2)
	if err != nil || !first.Acquired {
		t.Fatalf("AcquireSlot through d1 = %+v, %v", first, err)
	}
	again, err = s2.AcquireSlot(ctx, driverRequest(sem, "tok", ttl), 2)
	if err != nil || !again.Acquired || again.Fence != first.Fence {
		t.Errorf("AcquireSlot of the same token through d2 = %+v, %v; want fence %d", again, err, first.Fence)
	}
	if n := entries(sem); n != 1 {
		t.Errorf("%d slot entries after two acquires of one token; want 1", n)
	}
	if err := s1.ReleaseSlot(ctx, sem, "tok"); err != nil {
		t.Errorf("ReleaseSlot through d1 = %v", err)
	}
	if n := entries(sem); n != 0 {
		t.Errorf("%d slot entries after the release; want 0", n)
	}
}
