package dlock_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// term is one leader's time in office, by the backend's (fake) clock.
type term struct {
	who        int
	fence      uint64
	start, end time.Time
}

// TestElectionTakeover runs three candidates; each leader is cut off from
// the backend after a while, so the next one takes over. Terms must never
// overlap, fences must increase, and each candidate's callbacks must come in
// order: elected, lead, demoted.
func TestElectionTakeover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		ctx, cancel := context.WithCancel(t.Context())
		var (
			mu     sync.Mutex
			terms  []term
			events = make([][]string, 3)
			wg     sync.WaitGroup
		)
		for i := range 3 {
			fault := &refreshFault{Locker: store.Driver()}
			l := dlock.New(fault, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 3 * time.Second, Owner: fmt.Sprint("candidate-", i)}})
			defer l.Close()
			note := func(s string) { mu.Lock(); events[i] = append(events[i], s); mu.Unlock() }
			e := dlock.NewElection(l, "leader", &dlock.ElectionOptions{
				LossDelay: 5 * time.Second, // lets another candidate win
				OnElected: func(*dlock.Lease) { note("elected") },
				OnDemoted: func(_ *dlock.Lease, cause error) {
					if !errors.Is(cause, dlock.ErrLeaseLost) && ctx.Err() == nil {
						t.Errorf("candidate %d demoted with %v; want ErrLeaseLost", i, cause)
					}
					note("demoted")
				},
			})
			wg.Go(func() {
				err := e.Run(ctx, func(ctx context.Context, lease *dlock.Lease) error {
					note("lead")
					tm := term{who: i, fence: lease.Fence(), start: time.Now()}
					time.Sleep(10 * time.Second)
					fault.failWith(driver.ErrUnavailable) // partitioned from now on
					<-ctx.Done()
					tm.end = time.Now()
					fault.err.Store(nil) // the partition heals before it campaigns again
					mu.Lock()
					terms = append(terms, tm)
					mu.Unlock()
					return ctx.Err()
				})
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Run = %v; want context.Canceled after the test stops it", err)
				}
			})
		}
		time.Sleep(2 * time.Minute)
		cancel()
		wg.Wait()

		if len(terms) < 5 {
			t.Fatalf("%d terms in 2 minutes; want several takeovers", len(terms))
		}
		for i := 1; i < len(terms); i++ {
			prev, cur := terms[i-1], terms[i]
			if !cur.start.After(prev.end) {
				t.Errorf("term %d (candidate %d) started at %v before term %d ended at %v: two leaders", i, cur.who, cur.start, i-1, prev.end)
			}
			if cur.fence <= prev.fence {
				t.Errorf("term %d fence %d not above the previous %d", i, cur.fence, prev.fence)
			}
		}
		for i, ev := range events {
			for j, e := range ev {
				if want := []string{"elected", "lead", "demoted"}[j%3]; e != want {
					t.Fatalf("candidate %d events %v: event %d is %q, want %q", i, ev, j, e, want)
				}
			}
		}
	})
}

// TestElectionResign: a leader that resigns lets a waiting candidate lead,
// and the lead function sees ErrResigned.
func TestElectionResign(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		leaders := make(chan string, 10)
		var elections []*dlock.Election
		var wg sync.WaitGroup
		for _, name := range []string{"a", "b"} {
			l := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second, Owner: name}})
			defer l.Close()
			e := dlock.NewElection(l, "leader", nil)
			elections = append(elections, e)
			wg.Go(func() {
				e.Run(ctx, func(ctx context.Context, lease *dlock.Lease) error {
					leaders <- name
					<-ctx.Done()
					if c := context.Cause(ctx); !errors.Is(c, dlock.ErrResigned) && !errors.Is(c, context.Canceled) {
						t.Errorf("%s's lead context cause = %v; want ErrResigned", name, c)
					}
					return nil
				})
			})
		}
		first := <-leaders
		synctest.Wait()
		watcher := store.Locker(nil)
		defer watcher.Close()
		h, ok, err := soleHolder(watcher.Holders(ctx, "leader"))
		if err != nil || !ok || h.Owner != first {
			t.Fatalf("Leader = %v, %v, %v; want %s", h, ok, err, first)
		}
		for _, e := range elections {
			e.Resign() // only the leader's has an effect
		}
		if second := <-leaders; second == first {
			t.Fatalf("%s led again right after resigning; want the other candidate", second)
		}
		cancel()
		wg.Wait()
	})
}

// TestElectionObservesLeader: a waiting candidate reports each new leader.
func TestElectionObservesLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		leader := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second, Owner: "boss"}})
		defer leader.Close()
		lease, err := leader.Acquire(ctx, "leader", nil)
		if err != nil {
			t.Fatal(err)
		}
		var seen []string
		var mu sync.Mutex
		l := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Second, Owner: "standby"}})
		defer l.Close()
		done := make(chan error)
		go func() {
			done <- dlock.NewElection(l, "leader", &dlock.ElectionOptions{
				OnLeader: func(h dlock.Holder) { mu.Lock(); seen = append(seen, h.Owner); mu.Unlock() },
			}).Run(ctx, func(context.Context, *dlock.Lease) error { return errors.New("done") })
		}()
		time.Sleep(5 * time.Second)
		lease.Release(ctx)
		if err := <-done; err == nil || err.Error() != "done" {
			t.Fatalf("Run = %v; want the lead function's error", err)
		}
		if !slices.Equal(seen, []string{"boss"}) {
			t.Fatalf("observed leaders %v; want [boss] once", seen)
		}
	})
}

// TestElectionPanicReleases: a lead function that panics gives up the
// lease before the panic goes on, and OnDemoted reports it, so another
// candidate is elected at once.
func TestElectionPanicReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		a := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute, Owner: "a"}})
		defer a.Close()
		var demoted error
		ea := dlock.NewElection(a, "leader", &dlock.ElectionOptions{
			OnDemoted: func(_ *dlock.Lease, cause error) { demoted = cause },
		})
		recovered := make(chan any)
		go func() {
			defer func() { recovered <- recover() }()
			ea.Run(ctx, func(context.Context, *dlock.Lease) error { panic("boom") })
		}()
		if r := <-recovered; r != "boom" {
			t.Fatalf("recovered %v; want Run to re-panic with the lead function's value", r)
		}
		if demoted == nil || !strings.Contains(demoted.Error(), "boom") {
			t.Errorf("OnDemoted cause = %v; want one that names the panic", demoted)
		}
		b := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute, Owner: "b"}})
		defer b.Close()
		start := time.Now()
		bctx, bcancel := context.WithTimeout(ctx, 5*time.Minute)
		defer bcancel()
		err := dlock.NewElection(b, "leader", nil).Run(bctx, func(context.Context, *dlock.Lease) error { return nil })
		if err != nil {
			t.Fatalf("b's Run = %v after %v (TTL 1m); the panicking leader's lease must be released", err, time.Since(start))
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("b elected %v after a's lead function panicked (TTL 1m); the lease must be released", d)
		}
	})
}

// TestElectionResignInOnElected: Resign called from OnElected is not lost:
// the lead function starts with its context ended by ErrResigned, and the
// candidate campaigns again after ResignDelay.
func TestElectionResignInOnElected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := memdriver.New(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}})
		defer l.Close()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var e *dlock.Election
		terms := 0
		e = dlock.NewElection(l, "leader", &dlock.ElectionOptions{
			ResignDelay: time.Second,
			OnElected:   func(*dlock.Lease) { e.Resign() },
		})
		err := e.Run(ctx, func(ctx context.Context, _ *dlock.Lease) error {
			terms++
			if c := context.Cause(ctx); !errors.Is(c, dlock.ErrResigned) {
				t.Errorf("term %d: lead context cause = %v; want ErrResigned from OnElected", terms, c)
			}
			if terms == 2 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) || terms != 2 {
			t.Fatalf("Run = %v after %d terms; want context.Canceled after 2 (a resignation campaigns again)", err, terms)
		}
	})
}

// TestElectionResignAfterLead: a Resign after the lead function returned
// does not start another campaign: Run returns the lead function's error.
func TestElectionResignAfterLead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := memdriver.New(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}})
		defer l.Close()
		var e *dlock.Election
		terms := 0
		e = dlock.NewElection(l, "leader", &dlock.ElectionOptions{
			OnDemoted: func(*dlock.Lease, error) { e.Resign() },
		})
		done := errors.New("done")
		err := e.Run(t.Context(), func(context.Context, *dlock.Lease) error { terms++; return done })
		if err != done || terms != 1 {
			t.Fatalf("Run = %v after %d terms; want the lead function's error after 1", err, terms)
		}
	})
}

// TestElectionGoexitInLead: a lead function that ends its goroutine with
// runtime.Goexit (t.FailNow in a test, say) releases the lease and reports
// the demotion, and the Goexit goes on as a Goexit: Run must not turn it
// into a panic.
func TestElectionGoexitInLead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memdriver.NewStore()
		a := store.Locker(&dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: time.Minute}})
		defer a.Close()
		var demoted error
		e := dlock.NewElection(a, "leader", &dlock.ElectionOptions{
			OnDemoted: func(_ *dlock.Lease, cause error) { demoted = cause },
		})
		recovered := make(chan any)
		go func() {
			defer func() { recovered <- recover() }()
			e.Run(t.Context(), func(context.Context, *dlock.Lease) error {
				runtime.Goexit()
				return nil
			})
		}()
		if r := <-recovered; r != nil {
			t.Fatalf("Run turned the lead function's Goexit into a panic: %v", r)
		}
		if demoted == nil || !strings.Contains(demoted.Error(), "Goexit") {
			t.Errorf("OnDemoted cause = %v; want one that names the Goexit", demoted)
		}
		mustBeFree(t, store, "leader", "a lead function that called Goexit must leave the lease released")
	})
}
