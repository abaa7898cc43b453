package dlockotel_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/dlock-go/dlock/dlockotel"
	"github.com/dlock-go/dlock/driver"
)

// telemetry is an Observer on the SDK's in-memory metric reader and span
// recorder.
type telemetry struct {
	obs    *dlockotel.Observer
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
}

func newTelemetry(t *testing.T, opts dlockotel.Options) *telemetry {
	t.Helper()
	tm := &telemetry{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(tm.reader))
	tm.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tm.spans))
	t.Cleanup(func() {
		mp.Shutdown(context.Background())
		tm.tp.Shutdown(context.Background())
	})
	opts.MeterProvider, opts.TracerProvider = mp, tm.tp
	obs, err := dlockotel.New(&opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tm.obs = obs
	return tm
}

// metrics collects the metrics recorded so far, by name.
func (tm *telemetry) metrics(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tm.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	m := make(map[string]metricdata.Metrics)
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != dlockotel.ScopeName {
			t.Errorf("scope %q; want %q", sm.Scope.Name, dlockotel.ScopeName)
		}
		for _, x := range sm.Metrics {
			m[x.Name] = x
		}
	}
	return m
}

// point is one data point of any instrument, reduced to what tests check.
type point struct {
	attrs string // "k=v,k=v", sorted
	value int64  // a sum's value, or a histogram's count
	sum   float64
}

// points returns m's data points by attributes; none if m is the zero
// Metrics of an instrument that recorded nothing.
func points(t *testing.T, m metricdata.Metrics) map[string]point {
	t.Helper()
	p := make(map[string]point)
	switch d := m.Data.(type) {
	case nil:
	case metricdata.Sum[int64]:
		for _, dp := range d.DataPoints {
			a := enc(dp.Attributes)
			p[a] = point{attrs: a, value: dp.Value}
		}
	case metricdata.Histogram[float64]:
		for _, dp := range d.DataPoints {
			a := enc(dp.Attributes)
			p[a] = point{attrs: a, value: int64(dp.Count), sum: dp.Sum}
		}
	default:
		t.Fatalf("%s has data %T", m.Name, m.Data)
	}
	return p
}

func enc(s attribute.Set) string { return s.Encoded(attribute.DefaultEncoder()) }

func keys[V any](m map[string]V) []string {
	return slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
}

// spanNamed returns the ended spans called name, in the order they ended.
func (tm *telemetry) spanNamed(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tm.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func spanAttrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value)
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// allText returns every string that telemetry holds — span names, span and
// event attributes, status descriptions, metric names and metric
// attributes — one per line.
func (tm *telemetry) allText(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, s := range tm.spans.Ended() {
		b.WriteString(s.Name() + "\n" + s.Status().Description + "\n")
		for _, kv := range s.Attributes() {
			b.WriteString(string(kv.Key) + "=" + kv.Value.Emit() + "\n")
		}
		for _, ev := range s.Events() {
			b.WriteString(ev.Name + "\n")
			for _, kv := range ev.Attributes {
				b.WriteString(string(kv.Key) + "=" + kv.Value.Emit() + "\n")
			}
		}
	}
	for name, m := range tm.metrics(t) {
		b.WriteString(name + "\n")
		for a := range points(t, m) {
			b.WriteString(a + "\n")
		}
	}
	return b.String()
}

// faultDriver passes calls to a memdriver client until told to fail them.
// It hides memdriver's batch refresh, so that every renewal goes through
// Refresh.
type faultDriver struct {
	driver.Locker
	driver.Notifier

	mu                                 sync.Mutex
	acquireErr, refreshErr, releaseErr error
}

func newFaultDriver(d driver.Locker) *faultDriver {
	return &faultDriver{Locker: d, Notifier: d.(driver.Notifier)}
}

// failAcquire makes every Acquire fail with err; nil heals.
func (f *faultDriver) failAcquire(err error) { f.mu.Lock(); f.acquireErr = err; f.mu.Unlock() }

// failRefresh makes every Refresh fail with err, as a backend that became
// unreachable for renewals; nil heals.
func (f *faultDriver) failRefresh(err error) { f.mu.Lock(); f.refreshErr = err; f.mu.Unlock() }

// failRelease makes every Release fail with err; nil heals.
func (f *faultDriver) failRelease(err error) { f.mu.Lock(); f.releaseErr = err; f.mu.Unlock() }

func (f *faultDriver) Release(ctx context.Context, key, token string) error {
	f.mu.Lock()
	err := f.releaseErr
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.Locker.Release(ctx, key, token)
}

func (f *faultDriver) Acquire(ctx context.Context, req driver.Request) (driver.Result, error) {
	f.mu.Lock()
	err := f.acquireErr
	f.mu.Unlock()
	if err != nil {
		return driver.Result{}, err
	}
	return f.Locker.Acquire(ctx, req)
}

func (f *faultDriver) Refresh(ctx context.Context, key, token string, ttl time.Duration) error {
	f.mu.Lock()
	err := f.refreshErr
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.Locker.Refresh(ctx, key, token, ttl)
}
