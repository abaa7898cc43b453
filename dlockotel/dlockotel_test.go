package dlockotel_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/dlockotel"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/memdriver"
)

// password is in the fault driver's errors, the way a careless driver might
// quote its connection URL.
const password = "hunter2-s3cret"

var errBackendDown = fmt.Errorf("dial redis://app:%s@10.0.0.7:6379: connection refused: %w", password, driver.ErrUnavailable)

const seqKey = "orders/42"

// sequence is what runSequence did.
type sequence struct {
	lease1, lease2 *dlock.Lease
	parent         trace.SpanContext
	whileHeld      map[string]metricdata.Metrics // metrics once w2 holds the key
}

// hold is how long w1 holds seqKey: under the renewal interval (1s), so
// that w1's lease is never renewed.
const hold = 900 * time.Millisecond

// runSequence takes seqKey through a lease's life, on fake time: w1 holds
// it for 900ms while w2 first tries (busy), then waits; w2 gets it,
// renews it twice, loses it when its renewals start failing (the backend
// became unreachable for w2), and releases it late. Finally w2 fails to
// acquire another key with the backend unreachable. Every call runs under
// the span "request".
func runSequence(t *testing.T, tm *telemetry) sequence {
	t.Helper()
	store := memdriver.NewStore()
	opts := func(owner string) *dlock.Options {
		return &dlock.Options{Observer: tm.obs.Observe, LeaseOptions: dlock.LeaseOptions{TTL: 3 * time.Second, Owner: owner}}
	}
	l1 := store.Locker(opts("w1"))
	t.Cleanup(func() { l1.Close() })
	fault := newFaultDriver(store.Driver())
	l2 := dlock.New(fault, opts("w2"))
	t.Cleanup(func() { l2.Close() })

	ctx, parent := tm.tp.Tracer("test").Start(t.Context(), "request")
	defer parent.End()
	s := sequence{parent: parent.SpanContext()}

	var err error
	if s.lease1, err = l1.Acquire(ctx, seqKey, nil); err != nil {
		t.Fatalf("w1 Acquire: %v", err)
	}
	if _, err := l2.TryAcquire(ctx, seqKey, nil); !errors.Is(err, dlock.ErrNotAcquired) {
		t.Fatalf("w2 TryAcquire of a held key = %v; want ErrNotAcquired", err)
	}
	released := make(chan error, 1)
	go func() {
		time.Sleep(hold)
		released <- s.lease1.Release(ctx)
	}()
	if s.lease2, err = l2.Acquire(ctx, seqKey, nil); err != nil {
		t.Fatalf("w2 Acquire: %v", err)
	}
	if err := <-released; err != nil {
		t.Fatalf("w1 Release: %v", err)
	}
	s.whileHeld = tm.metrics(t)

	time.Sleep(2500 * time.Millisecond) // two renewals
	fault.failRefresh(errBackendDown)
	<-s.lease2.Context().Done()
	synctest.Wait()
	if err := s.lease2.Release(ctx); !errors.Is(err, dlock.ErrLeaseLost) {
		t.Fatalf("Release of a lost lease = %v; want ErrLeaseLost", err)
	}

	fault.failAcquire(errBackendDown)
	if _, err := l2.TryAcquire(ctx, "other", nil); !errors.Is(err, dlock.ErrUnavailable) {
		t.Fatalf("TryAcquire with the backend down = %v; want ErrUnavailable", err)
	}
	return s
}

// TestSequence checks every instrument and span a lease's life produces,
// with the default key modes: hashed in spans, omitted from metrics.
func TestSequence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tm := newTelemetry(t, dlockotel.Options{Driver: "mem"})
		s := runSequence(t, tm)

		const (
			base        = "dlock.driver=mem"
			granted     = base + ",dlock.outcome=granted"
			busy        = base + ",dlock.outcome=not_acquired,error.type=busy"
			unavailable = base + ",dlock.outcome=not_acquired,error.type=unavailable"
			released    = base + ",dlock.outcome=released"
			lost        = base + ",dlock.outcome=lost,error.type=expired"
			refreshed   = base + ",dlock.outcome=refreshed"
			failed      = base + ",dlock.outcome=failed,error.type=unavailable"
		)
		type want struct {
			kind  string // histogram, counter, updown
			unit  string
			attrs []string
		}
		wants := map[string]want{
			"dlock.acquire.duration":       {"histogram", "s", []string{granted, busy, unavailable}},
			"dlock.acquire.busy_attempts":  {"counter", "{attempt}", []string{base}},
			"dlock.lease.grants":           {"counter", "{lease}", []string{base}},
			"dlock.lease.held":             {"updown", "{lease}", []string{base}},
			"dlock.lease.duration":         {"histogram", "s", []string{released, lost}},
			"dlock.lease.losses":           {"counter", "{lease}", []string{base + ",error.type=expired"}},
			"dlock.lease.refresh.duration": {"histogram", "s", []string{refreshed, failed}},
			"dlock.lease.refresh.failures": {"counter", "{refresh}", []string{base + ",error.type=unavailable"}},
		}
		ms := tm.metrics(t)
		if got, want := strings.Join(keys(ms), " "), strings.Join(keys(wants), " "); got != want {
			t.Fatalf("metrics %s;\nwant %s (dlock.election.leader has no data without elections)", got, want)
		}
		p := make(map[string]map[string]point)
		for name, w := range wants {
			m := ms[name]
			if m.Unit != w.unit || m.Description == "" {
				t.Errorf("%s: unit %q, description %q; want unit %q and a description", name, m.Unit, m.Description, w.unit)
			}
			kind := "histogram"
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok {
				kind = map[bool]string{true: "counter", false: "updown"}[sum.IsMonotonic]
			}
			if kind != w.kind {
				t.Errorf("%s is a %s; want a %s", name, kind, w.kind)
			}
			p[name] = points(t, m)
			if got, want := strings.Join(keys(p[name]), " | "), strings.Join(slices.Sorted(slices.Values(w.attrs)), " | "); got != want {
				t.Errorf("%s has points with attributes\n\t%s\nwant\n\t%s", name, got, want)
			}
		}

		const ms1 = time.Millisecond
		near := func(got float64, want time.Duration) bool { return math.Abs(got-want.Seconds()) < ms1.Seconds() }
		if a := p["dlock.acquire.duration"][granted]; a.value != 2 || !near(a.sum, hold) {
			t.Errorf("acquire.duration granted: %d calls, %.3fs in all; want 2 calls: one at once, one waiting %v", a.value, a.sum, hold)
		}
		if a := p["dlock.acquire.duration"][busy]; a.value != 1 || a.sum != 0 {
			t.Errorf("acquire.duration busy: %d calls, %.3fs; want the one TryAcquire, at once", a.value, a.sum)
		}
		if a := p["dlock.acquire.duration"][unavailable]; a.value != 1 {
			t.Errorf("acquire.duration unavailable: %d calls; want 1", a.value)
		}
		if n := p["dlock.acquire.busy_attempts"][base].value; n < 2 {
			t.Errorf("busy_attempts = %d; want at least 2 (the TryAcquire and the waiting Acquire)", n)
		}
		if n := p["dlock.lease.grants"][base].value; n != 2 {
			t.Errorf("grants = %d; want 2", n)
		}
		if n := points(t, s.whileHeld["dlock.lease.held"])[base].value; n != 1 {
			t.Errorf("held = %d while w2 held the key; want 1", n)
		}
		if n := p["dlock.lease.held"][base].value; n != 0 {
			t.Errorf("held = %d at the end; want 0: one release, one loss (and its late release not counted again)", n)
		}
		if d := p["dlock.lease.duration"][released]; d.value != 1 || !near(d.sum, hold) {
			t.Errorf("lease.duration released: %d leases, %.3fs; want w1's, held %v", d.value, d.sum, hold)
		}
		// Renewed on the Locker's renewal grid (every 1s from its
		// start, 0.9s before the grant): 1.1s and 2.1s after the grant;
		// the deadline then is 2.1s + TTL - drift (32ms) = 5.068s after it.
		if d := p["dlock.lease.duration"][lost]; d.value != 1 || !near(d.sum, 5068*time.Millisecond) {
			t.Errorf("lease.duration lost: %d leases, %.3fs; want w2's, held 5.068s", d.value, d.sum)
		}
		if n := p["dlock.lease.losses"][base+",error.type=expired"].value; n != 1 {
			t.Errorf("losses = %d; want 1", n)
		}
		if n := p["dlock.lease.refresh.duration"][refreshed].value; n != 2 {
			t.Errorf("refresh.duration refreshed: %d; want 2 renewals", n)
		}
		nf := p["dlock.lease.refresh.failures"][base+",error.type=unavailable"].value
		if hf := p["dlock.lease.refresh.duration"][failed].value; nf < 1 || hf != nf {
			t.Errorf("refresh.failures = %d, refresh.duration failed = %d; want the same, at least 1", nf, hf)
		}

		// Spans.
		type wantSpan struct {
			name    string
			d       time.Duration
			outcome string
			owner   string
			fence   uint64
			errType string
			status  codes.Code
			key     string
		}
		wantSpans := []wantSpan{
			{"dlock.acquire", 0, "granted", "w1", s.lease1.Fence(), "", codes.Unset, seqKey},
			{"dlock.acquire", 0, "not_acquired", "w2", 0, "busy", codes.Unset, seqKey},
			{"dlock.lease", hold, "released", "w1", s.lease1.Fence(), "", codes.Unset, seqKey},
			{"dlock.acquire", hold, "granted", "w2", s.lease2.Fence(), "", codes.Unset, seqKey},
			{"dlock.lease", 5068 * time.Millisecond, "lost", "w2", s.lease2.Fence(), "expired", codes.Error, seqKey},
			{"dlock.acquire", 0, "not_acquired", "w2", 0, "unavailable", codes.Error, "other"},
		}
		var got []sdktrace.ReadOnlySpan
		for _, sp := range tm.spans.Ended() {
			if sp.Name() != "request" {
				got = append(got, sp)
			}
		}
		if len(got) != len(wantSpans) {
			t.Fatalf("%d dlock spans; want %d", len(got), len(wantSpans))
		}
		for _, w := range wantSpans {
			desc := fmt.Sprintf("span %s %s %s of %s", w.name, w.outcome, w.errType, w.owner)
			// Spans of different goroutines end in either order.
			i := slices.IndexFunc(got, func(sp sdktrace.ReadOnlySpan) bool {
				a := spanAttrs(sp)
				return sp.Name() == w.name && a[dlockotel.AttrOutcome].AsString() == w.outcome &&
					a[dlockotel.AttrOwner].AsString() == w.owner && a[dlockotel.AttrErrorType].AsString() == w.errType
			})
			if i < 0 {
				t.Errorf("no %s", desc)
				continue
			}
			sp := got[i]
			got = slices.Delete(got, i, i+1)
			a := spanAttrs(sp)
			if d := sp.EndTime().Sub(sp.StartTime()); d != w.d {
				t.Errorf("%s lasts %v; want %v, back-dated from the event", desc, d, w.d)
			}
			if sp.Parent().SpanID() != s.parent.SpanID() || sp.SpanContext().TraceID() != s.parent.TraceID() {
				t.Errorf("%s has parent %v; want the request span %v", desc, sp.Parent().SpanID(), s.parent.SpanID())
			}
			if got := a[dlockotel.AttrDriver].AsString(); got != "mem" {
				t.Errorf("%s has driver %q; want mem", desc, got)
			}
			if got, want := a[dlockotel.AttrKey].AsString(), dlockotel.HashKey(w.key); got != want {
				t.Errorf("%s has key %q; want the hash %q", desc, got, want)
			}
			if f, ok := a[dlockotel.AttrFence]; w.fence == 0 && ok || w.fence != 0 && uint64(f.AsInt64()) != w.fence {
				t.Errorf("%s has fence %v; want %d (none if 0)", desc, f.Emit(), w.fence)
			}
			if got := a[dlockotel.AttrErrorType].AsString(); got != w.errType {
				t.Errorf("%s has error.type %q; want %q", desc, got, w.errType)
			}
			if sp.Status().Code != w.status {
				t.Errorf("%s has status %v; want %v", desc, sp.Status().Code, w.status)
			}
			if len(sp.Events()) != 0 {
				t.Errorf("%s has events %v; want none without ErrorMessages", desc, sp.Events())
			}
		}
	})
}

// TestNoSecrets runs the sequence under every key mode, with and without
// error messages, and checks that telemetry never shows a lease's token; nor
// the password that the driver's errors quote unless ErrorMessages asked for
// error texts; nor the raw key unless a key mode is KeyRaw or error texts
// were asked for.
func TestNoSecrets(t *testing.T) {
	modes := []dlockotel.KeyMode{dlockotel.KeyDefault, dlockotel.KeyHashed, dlockotel.KeyRaw, dlockotel.KeyOmitted}
	for _, spanKey := range modes {
		for _, metricKey := range modes {
			for _, messages := range []bool{false, true} {
				name := fmt.Sprintf("Span%s/Metric%s/Messages%v", title(spanKey), title(metricKey), messages)
				t.Run(name, func(t *testing.T) {
					synctest.Test(t, func(t *testing.T) {
						tm := newTelemetry(t, dlockotel.Options{Driver: "mem", SpanKey: spanKey, MetricKey: metricKey, ErrorMessages: messages})
						s := runSequence(t, tm)
						text := tm.allText(t)
						for _, tok := range []string{s.lease1.Token(), s.lease2.Token()} {
							if strings.Contains(text, tok) {
								t.Errorf("telemetry contains the token %q:\n%s", tok, text)
							}
						}
						if !messages && strings.Contains(text, password) {
							t.Errorf("telemetry contains the password without ErrorMessages:\n%s", text)
						}
						if spanKey != dlockotel.KeyRaw && metricKey != dlockotel.KeyRaw && !messages && strings.Contains(text, seqKey) {
							t.Errorf("telemetry contains the raw key %q:\n%s", seqKey, text)
						}
					})
				})
			}
		}
	}
}

func title(m dlockotel.KeyMode) string { return strings.ToUpper(m.String()[:1]) + m.String()[1:] }

// TestKeyModes checks how each mode shows the key, in spans and metrics.
func TestKeyModes(t *testing.T) {
	const key = "jobs/nightly"
	for _, tc := range []struct {
		spanKey, metricKey dlockotel.KeyMode
		wantSpan           string // "" for no attribute
		wantMetric         string
	}{
		{dlockotel.KeyDefault, dlockotel.KeyDefault, dlockotel.HashKey(key), ""},
		{dlockotel.KeyHashed, dlockotel.KeyHashed, dlockotel.HashKey(key), dlockotel.HashKey(key)},
		{dlockotel.KeyRaw, dlockotel.KeyRaw, key, key},
		{dlockotel.KeyOmitted, dlockotel.KeyOmitted, "", ""},
		{dlockotel.KeyRaw, dlockotel.KeyOmitted, key, ""},
	} {
		t.Run(title(tc.spanKey)+title(tc.metricKey), func(t *testing.T) {
			tm := newTelemetry(t, dlockotel.Options{SpanKey: tc.spanKey, MetricKey: tc.metricKey})
			l := memdriver.New(&dlock.Options{Observer: tm.obs.Observe})
			t.Cleanup(func() { l.Close() })
			lease, err := l.TryAcquire(t.Context(), key, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := lease.Release(t.Context()); err != nil {
				t.Fatal(err)
			}
			for _, sp := range tm.spans.Ended() {
				if got := spanAttrs(sp)[dlockotel.AttrKey].AsString(); got != tc.wantSpan {
					t.Errorf("span %s has dlock.key %q; want %q", sp.Name(), got, tc.wantSpan)
				}
			}
			wantAttrs := ""
			if tc.wantMetric != "" {
				wantAttrs = "dlock.key=" + tc.wantMetric
			}
			if got := strings.Join(keys(points(t, tm.metrics(t)["dlock.lease.grants"])), " "); got != wantAttrs {
				t.Errorf("grants have attributes %q; want %q", got, wantAttrs)
			}
		})
	}
}

// TestHashKey pins the hash: people compute it to find a key's spans.
func TestHashKey(t *testing.T) {
	const sha256Prefix = "933f0a5ebdb23af5" // printf jobs/nightly | sha256sum | cut -c1-16
	if got, want := dlockotel.HashKey("jobs/nightly"), "sha256:"+sha256Prefix; got != want {
		t.Errorf("HashKey = %q; want %q", got, want)
	}
}

// TestErrorTypes checks error.type on failed acquires, made to fail the
// way each type says.
func TestErrorTypes(t *testing.T) {
	errRefused := errors.New("WRONGPASS invalid username-password pair")
	for _, tc := range []struct {
		name string
		want string
		call func(ctx context.Context, l *dlock.Locker, f *faultDriver) error
	}{
		{"BusyTry", "busy", func(ctx context.Context, l *dlock.Locker, f *faultDriver) error {
			_, err := l.TryAcquire(ctx, "held", nil)
			return err
		}},
		{"BusyRetryGaveUp", "busy", func(ctx context.Context, l *dlock.Locker, f *faultDriver) error {
			_, err := l.Acquire(ctx, "held", &dlock.LeaseOptions{Retry: dlock.LimitRetry(dlock.ExponentialBackoff(10*time.Millisecond, 10*time.Millisecond), 3)})
			return err
		}},
		{"DeadlineWhileWaiting", "deadline_exceeded", func(ctx context.Context, l *dlock.Locker, f *faultDriver) error {
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, err := l.Acquire(ctx, "held", nil)
			return err
		}},
		{"Canceled", "canceled", func(ctx context.Context, l *dlock.Locker, f *faultDriver) error {
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			_, err := l.Acquire(ctx, "free", nil)
			return err
		}},
		{"BackendUnreachable", "unavailable", func(ctx context.Context, l *dlock.Locker, f *faultDriver) error {
			f.failAcquire(errBackendDown)
			_, err := l.TryAcquire(ctx, "free", nil)
			return err
		}},
		{"BackendTimeout", "unavailable", func(ctx context.Context, l *dlock.Locker, f *faultDriver) error {
			f.failAcquire(timeoutError{})
			_, err := l.TryAcquire(ctx, "free", nil)
			return err
		}},
		{"BackendRefused", "_OTHER", func(ctx context.Context, l *dlock.Locker, f *faultDriver) error {
			f.failAcquire(errRefused)
			_, err := l.Acquire(ctx, "free", nil)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tm := newTelemetry(t, dlockotel.Options{})
				store := memdriver.NewStore()
				holder := store.Locker(nil)
				t.Cleanup(func() { holder.Close() })
				if _, err := holder.Acquire(t.Context(), "held", nil); err != nil {
					t.Fatal(err)
				}
				f := newFaultDriver(store.Driver())
				l := dlock.New(f, &dlock.Options{Observer: tm.obs.Observe})
				t.Cleanup(func() { l.Close() })
				err := tc.call(t.Context(), l, f)
				if err == nil {
					t.Fatal("call succeeded; want it to fail")
				}
				if busy := tc.want == "busy" || tc.want == "deadline_exceeded"; errors.Is(err, dlock.ErrNotAcquired) != busy {
					t.Fatalf("call returned %v; want ErrNotAcquired only when the key was held", err)
				}
				want := "dlock.outcome=not_acquired,error.type=" + tc.want
				if got := strings.Join(keys(points(t, tm.metrics(t)["dlock.acquire.duration"])), " "); got != want {
					t.Errorf("acquire.duration attributes %q; want %q", got, want)
				}
			})
		})
	}
}

type timeoutError struct{}

func (timeoutError) Error() string { return "i/o timeout" }
func (timeoutError) Timeout() bool { return true }

// TestLeaseEnds checks how each way a lease ends is counted: the held count
// always returns to zero, losses are counted by cause.
func TestLeaseEnds(t *testing.T) {
	for _, tc := range []struct {
		name       string
		end        func(t *testing.T, lease *dlock.Lease, f *faultDriver)
		wantEnd    string // attributes of dlock.lease.duration
		wantLosses string // attributes of dlock.lease.losses, "" if none
		wantStatus codes.Code
	}{
		{"Released", func(t *testing.T, lease *dlock.Lease, f *faultDriver) {
			if err := lease.Release(t.Context()); err != nil {
				t.Fatal(err)
			}
		}, "dlock.outcome=released", "", codes.Unset},
		{"ReleaseUnreachable", func(t *testing.T, lease *dlock.Lease, f *faultDriver) {
			f.failRelease(errBackendDown)
			if err := lease.Release(t.Context()); !errors.Is(err, dlock.ErrUnavailable) {
				t.Fatalf("Release with the backend down = %v; want ErrUnavailable", err)
			}
		}, "dlock.outcome=released,error.type=unavailable", "", codes.Error},
		{"TakenOver", func(t *testing.T, lease *dlock.Lease, f *faultDriver) {
			f.failRefresh(fmt.Errorf("key taken over: %w", driver.ErrNotHeld))
			<-lease.Context().Done()
			lease.Release(t.Context())
		}, "dlock.outcome=lost,error.type=not_held", "error.type=not_held", codes.Error},
		{"RenewalsUnreachable", func(t *testing.T, lease *dlock.Lease, f *faultDriver) {
			f.failRefresh(errBackendDown)
			<-lease.Context().Done()
			lease.Release(t.Context())
		}, "dlock.outcome=lost,error.type=expired", "error.type=expired", codes.Error},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tm := newTelemetry(t, dlockotel.Options{})
				f := newFaultDriver(memdriver.NewStore().Driver())
				l := dlock.New(f, &dlock.Options{Observer: tm.obs.Observe, LeaseOptions: dlock.LeaseOptions{TTL: 3 * time.Second}})
				t.Cleanup(func() { l.Close() })
				lease, err := l.Acquire(t.Context(), "k", nil)
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(1500 * time.Millisecond)
				tc.end(t, lease, f)
				synctest.Wait()

				ms := tm.metrics(t)
				if got := strings.Join(keys(points(t, ms["dlock.lease.duration"])), " "); got != tc.wantEnd {
					t.Errorf("lease.duration attributes %q; want %q", got, tc.wantEnd)
				}
				if got := strings.Join(keys(points(t, ms["dlock.lease.losses"])), " "); got != tc.wantLosses {
					t.Errorf("lease.losses attributes %q; want %q", got, tc.wantLosses)
				}
				if got := points(t, ms["dlock.lease.held"])[""].value; got != 0 {
					t.Errorf("lease.held = %d after the lease ended; want 0", got)
				}
				spans := tm.spanNamed("dlock.lease")
				if len(spans) != 1 || spans[0].Status().Code != tc.wantStatus {
					t.Fatalf("%d dlock.lease spans; want 1 with status %v", len(spans), tc.wantStatus)
				}
			})
		})
	}
}

// TestElection checks the leader count of an election, and the key on it.
func TestElection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tm := newTelemetry(t, dlockotel.Options{MetricKey: dlockotel.KeyRaw})
		l := memdriver.New(&dlock.Options{Observer: tm.obs.Observe})
		t.Cleanup(func() { l.Close() })
		const want = "dlock.key=scheduler"
		leading, done := make(chan struct{}), make(chan struct{})
		errc := make(chan error, 1)
		go func() {
			errc <- dlock.NewElection(l, "scheduler", nil).Run(t.Context(), func(ctx context.Context, _ *dlock.Lease) error {
				close(leading)
				<-done
				return nil
			})
		}()
		<-leading
		if got := points(t, tm.metrics(t)["dlock.election.leader"])[want].value; got != 1 {
			t.Errorf("election.leader{%s} = %d while leading; want 1", want, got)
		}
		close(done)
		if err := <-errc; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if got := points(t, tm.metrics(t)["dlock.election.leader"])[want].value; got != 0 {
			t.Errorf("election.leader{%s} = %d after leading; want 0", want, got)
		}
	})
}

// TestOptions checks defaults and bad options.
func TestOptions(t *testing.T) {
	if _, err := dlockotel.New(&dlockotel.Options{SpanKey: 9}); !errors.Is(err, dlock.ErrInvalid) {
		t.Errorf("New with SpanKey 9 = %v; want ErrInvalid", err)
	}
	if _, err := dlockotel.New(&dlockotel.Options{MetricKey: -1}); !errors.Is(err, dlock.ErrInvalid) {
		t.Errorf("New with MetricKey -1 = %v; want ErrInvalid", err)
	}
	// nil options: the global providers, which do nothing until set.
	obs, err := dlockotel.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	l := memdriver.New(&dlock.Options{Observer: obs.Observe})
	defer l.Close()
	lease, err := l.TryAcquire(t.Context(), "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	lease.Release(t.Context())
}
