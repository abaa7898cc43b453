package dlockotel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/dlock-go/dlock"
)

// ScopeName is the instrumentation scope of the Observer's meter and tracer.
const ScopeName = "github.com/dlock-go/dlock/dlockotel"

// Attribute keys. Metrics never carry owner or fence: each would add a time
// series per process or per lease.
const (
	AttrDriver    = attribute.Key("dlock.driver")          // Options.Driver
	AttrKey       = attribute.Key("dlock.key")             // the key, as Options.SpanKey and MetricKey say
	AttrOutcome   = attribute.Key("dlock.outcome")         // granted, not_acquired, refreshed, failed, released, lost
	AttrErrorType = attribute.Key("error.type")            // see the package doc
	AttrOwner     = attribute.Key("dlock.owner")           // spans only
	AttrFence     = attribute.Key("dlock.lease.fence")     // spans only
	AttrLimit     = attribute.Key("dlock.semaphore.limit") // spans of a semaphore's leases only
)

// KeyMode says how a lock's key appears in telemetry.
type KeyMode int

const (
	// KeyDefault takes the default of the field it is in.
	KeyDefault KeyMode = iota
	// KeyHashed shows "sha256:" and the first 16 hex digits of the
	// SHA-256 of the key: stable across processes, so one key's spans can
	// be found by hashing it, without the key itself in the backend. It
	// hides a key but does not protect a guessable one (a user name, an
	// order number): who can enumerate the candidates can hash them. Use
	// KeyOmitted for those.
	KeyHashed
	// KeyRaw shows the key as it is.
	KeyRaw
	// KeyOmitted leaves the key attribute out.
	KeyOmitted
)

var keyModeNames = [...]string{"default", "hashed", "raw", "omitted"}

// String returns the mode's lowercase name, such as "hashed".
func (m KeyMode) String() string {
	if m < 0 || int(m) >= len(keyModeNames) {
		return fmt.Sprintf("KeyMode(%d)", int(m))
	}
	return keyModeNames[m]
}

// Options configure an [Observer]. A nil *Options means the defaults.
type Options struct {
	// MeterProvider creates the instruments.
	// Default: otel.GetMeterProvider(), the global one.
	MeterProvider metric.MeterProvider

	// TracerProvider creates the spans.
	// Default: otel.GetTracerProvider(), the global one.
	TracerProvider trace.TracerProvider

	// Driver is the value of the dlock.driver attribute on every metric
	// and span, such as "redis" or "mem", so that one process's lockers on
	// different backends can be told apart. Default: "", no attribute.
	Driver string

	// SpanKey says how spans show the key. A trace holds few spans, so the
	// number of distinct keys does not matter there; whether the key may
	// be read by whoever reads traces does. Default: KeyHashed.
	SpanKey KeyMode

	// MetricKey says how metrics show the key. Every distinct key becomes
	// a time series of every instrument, so only a small, fixed set of keys
	// (job names, elections) should be shown; keys built from ids must not.
	// Default: KeyOmitted.
	MetricKey KeyMode

	// ErrorMessages records the text of each error on the span that ends
	// with it, as an exception event. The texts name the key in full,
	// whatever SpanKey says, and a driver's error quotes what its backend
	// said. Default: false: spans carry error.type and a status only.
	ErrorMessages bool
}

// Observer turns a [dlock.Locker]'s events into OpenTelemetry metrics and
// spans; set its Observe method as [dlock.Options].Observer. The package
// doc lists what it records. One Observer may serve many Lockers that
// share its Options.
//
// An Observer is safe for concurrent use.
type Observer struct {
	tracer        trace.Tracer
	driver        string
	spanKey       KeyMode
	metricKey     KeyMode
	errorMessages bool

	acquireDuration metric.Float64Histogram
	busy            metric.Int64Counter
	grants          metric.Int64Counter
	held            metric.Int64UpDownCounter
	leaseDuration   metric.Float64Histogram
	losses          metric.Int64Counter
	refreshDuration metric.Float64Histogram
	refreshFailures metric.Int64Counter
	leader          metric.Int64UpDownCounter

	// static holds the measurement options for every outcome and error
	// type when metrics carry no key, so that recording allocates nothing.
	static [numOutcomes][numErrTypes]measure
}

// measure is one set of metric attributes as the options of Add and Record.
type measure struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

func newMeasure(kvs []attribute.KeyValue) measure {
	opt := metric.WithAttributeSet(attribute.NewSet(kvs...))
	return measure{add: []metric.AddOption{opt}, rec: []metric.RecordOption{opt}}
}

// New returns an Observer, with its instruments created now from
// opts.MeterProvider. If the provider fails to create some, New returns
// their errors, joined, with an Observer whose failed instruments do
// nothing, as OpenTelemetry's constructors do. An unknown [KeyMode] is an
// error wrapping [dlock.ErrInvalid], with a nil Observer.
func New(opts *Options) (*Observer, error) {
	var in Options
	if opts != nil {
		in = *opts
	}
	o := &Observer{driver: in.Driver, spanKey: in.SpanKey, metricKey: in.MetricKey, errorMessages: in.ErrorMessages}
	if o.spanKey == KeyDefault {
		o.spanKey = KeyHashed
	}
	if o.metricKey == KeyDefault {
		o.metricKey = KeyOmitted
	}
	for _, m := range []KeyMode{o.spanKey, o.metricKey} {
		if m < KeyHashed || m > KeyOmitted {
			return nil, fmt.Errorf("dlockotel: %w: unknown %v", dlock.ErrInvalid, m)
		}
	}
	mp, tp := in.MeterProvider, in.TracerProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	o.tracer = tp.Tracer(ScopeName)
	m := mp.Meter(ScopeName)

	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	o.acquireDuration, err = m.Float64Histogram("dlock.acquire.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of Acquire and TryAcquire calls, waiting for the key included."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
	check(err)
	o.busy, err = m.Int64Counter("dlock.acquire.busy_attempts", metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts to acquire a key that found it held by another lease."))
	check(err)
	o.grants, err = m.Int64Counter("dlock.lease.grants", metric.WithUnit("{lease}"),
		metric.WithDescription("Leases granted."))
	check(err)
	o.held, err = m.Int64UpDownCounter("dlock.lease.held", metric.WithUnit("{lease}"),
		metric.WithDescription("Leases currently held: granted and neither released nor lost."))
	check(err)
	o.leaseDuration, err = m.Float64Histogram("dlock.lease.duration", metric.WithUnit("s"),
		metric.WithDescription("How long leases were held, from the acquire that won to release or loss."),
		metric.WithExplicitBucketBoundaries(0.01, 0.1, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 21600, 86400))
	check(err)
	o.losses, err = m.Int64Counter("dlock.lease.losses", metric.WithUnit("{lease}"),
		metric.WithDescription("Leases lost: ended without release because renewal failed or the backend no longer held them."))
	check(err)
	o.refreshDuration, err = m.Float64Histogram("dlock.lease.refresh.duration", metric.WithUnit("s"),
		metric.WithDescription("Round trip of lease renewals, automatic or by Lease.Refresh."),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
	check(err)
	o.refreshFailures, err = m.Int64Counter("dlock.lease.refresh.failures", metric.WithUnit("{refresh}"),
		metric.WithDescription("Renewals that failed; the lease lives on until its deadline."))
	check(err)
	o.leader, err = m.Int64UpDownCounter("dlock.election.leader", metric.WithUnit("{election}"),
		metric.WithDescription("Elections this process currently leads."))
	check(err)

	if o.metricKey == KeyOmitted {
		for oc := range numOutcomes {
			for et := range numErrTypes {
				o.static[oc][et] = newMeasure(o.metricAttrs(nil, "", oc, et))
			}
		}
	}
	return o, errors.Join(errs...)
}

// Observe records e; see the package doc. Set it as [dlock.Options].Observer.
func (o *Observer) Observe(ctx context.Context, e dlock.Event) {
	switch e.Kind {
	case dlock.EventBusy:
		o.add(ctx, o.busy, 1, e.Key, noOutcome, noErr)
	case dlock.EventGranted:
		o.record(ctx, o.acquireDuration, e, granted, noErr)
		o.add(ctx, o.grants, 1, e.Key, noOutcome, noErr)
		o.add(ctx, o.held, 1, e.Key, noOutcome, noErr)
		o.span(ctx, "dlock.acquire", e, granted, noErr)
	case dlock.EventNotAcquired:
		et := errorType(e.Err)
		o.record(ctx, o.acquireDuration, e, notAcquired, et)
		o.span(ctx, "dlock.acquire", e, notAcquired, et)
	case dlock.EventRefreshed:
		o.record(ctx, o.refreshDuration, e, refreshed, noErr)
	case dlock.EventRefreshFailed:
		et := errorType(e.Err)
		o.record(ctx, o.refreshDuration, e, failed, et)
		o.add(ctx, o.refreshFailures, 1, e.Key, noOutcome, et)
	case dlock.EventLost:
		et := lossType(e.Err)
		o.add(ctx, o.losses, 1, e.Key, noOutcome, et)
		o.add(ctx, o.held, -1, e.Key, noOutcome, noErr)
		o.record(ctx, o.leaseDuration, e, lost, et)
		o.span(ctx, "dlock.lease", e, lost, et)
	case dlock.EventReleased:
		if errors.Is(e.Err, dlock.ErrLeaseLost) {
			return // counted when it was lost
		}
		et := errorType(e.Err)
		o.add(ctx, o.held, -1, e.Key, noOutcome, noErr)
		o.record(ctx, o.leaseDuration, e, released, et)
		o.span(ctx, "dlock.lease", e, released, et)
	case dlock.EventElected:
		o.add(ctx, o.leader, 1, e.Key, noOutcome, noErr)
	case dlock.EventDemoted:
		o.add(ctx, o.leader, -1, e.Key, noOutcome, noErr)
	}
}

// counter is an Int64Counter or an Int64UpDownCounter.
type counter interface {
	Add(ctx context.Context, incr int64, options ...metric.AddOption)
	Enabled(ctx context.Context) bool
}

func (o *Observer) add(ctx context.Context, c counter, n int64, key string, oc outcome, et errType) {
	if o.metricKey == KeyOmitted {
		c.Add(ctx, n, o.static[oc][et].add...)
	} else if c.Enabled(ctx) {
		c.Add(ctx, n, metric.WithAttributeSet(o.keyed(key, oc, et)))
	}
}

// record records e.Duration in seconds.
func (o *Observer) record(ctx context.Context, h metric.Float64Histogram, e dlock.Event, oc outcome, et errType) {
	if o.metricKey == KeyOmitted {
		h.Record(ctx, e.Duration.Seconds(), o.static[oc][et].rec...)
	} else if h.Enabled(ctx) {
		h.Record(ctx, e.Duration.Seconds(), metric.WithAttributeSet(o.keyed(e.Key, oc, et)))
	}
}

// keyed returns metric attributes with a key.
func (o *Observer) keyed(key string, oc outcome, et errType) attribute.Set {
	var buf [4]attribute.KeyValue
	return attribute.NewSet(o.metricAttrs(buf[:0], key, oc, et)...)
}

// span records a span that ends now and began e.Duration ago: the hook
// reports a call when it is over. The span's end is left to the tracer's
// clock, a few hundred nanoseconds later at most, which saves allocations.
func (o *Observer) span(ctx context.Context, name string, e dlock.Event, oc outcome, et errType) {
	_, span := o.tracer.Start(ctx, name, trace.WithTimestamp(time.Now().Add(-e.Duration)))
	if span.IsRecording() {
		var buf [8]attribute.KeyValue
		kvs := append(buf[:0], AttrOutcome.String(outcomeNames[oc]), AttrOwner.String(e.Owner))
		if o.driver != "" {
			kvs = append(kvs, AttrDriver.String(o.driver))
		}
		if kv, ok := keyAttr(o.spanKey, e.Key); ok {
			kvs = append(kvs, kv)
		}
		if e.Fence != 0 {
			kvs = append(kvs, AttrFence.Int64(int64(e.Fence)))
		}
		if e.Limit != 0 {
			kvs = append(kvs, AttrLimit.Int(e.Limit))
		}
		if et != noErr {
			kvs = append(kvs, AttrErrorType.String(errTypeNames[et]))
		}
		span.SetAttributes(kvs...)
		if e.Err != nil {
			if et != busy { // busy is an answer, not a failure
				span.SetStatus(codes.Error, errTypeNames[et])
			}
			if o.errorMessages {
				span.RecordError(e.Err)
			}
		}
	}
	span.End()
}

func (o *Observer) metricAttrs(kvs []attribute.KeyValue, key string, oc outcome, et errType) []attribute.KeyValue {
	if o.driver != "" {
		kvs = append(kvs, AttrDriver.String(o.driver))
	}
	if kv, ok := keyAttr(o.metricKey, key); ok {
		kvs = append(kvs, kv)
	}
	if oc != noOutcome {
		kvs = append(kvs, AttrOutcome.String(outcomeNames[oc]))
	}
	if et != noErr {
		kvs = append(kvs, AttrErrorType.String(errTypeNames[et]))
	}
	return kvs
}

// keyAttr returns the dlock.key attribute as mode says, if any.
func keyAttr(mode KeyMode, key string) (attribute.KeyValue, bool) {
	switch mode {
	case KeyRaw:
		return AttrKey.String(key), true
	case KeyHashed:
		return AttrKey.String(HashKey(key)), true
	}
	return attribute.KeyValue{}, false
}

// HashKey returns key as [KeyHashed] shows it: "sha256:" and the first 16
// hex digits of its SHA-256. Use it to find a known key's spans.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	var b [7 + 16]byte
	copy(b[:], "sha256:")
	hex.Encode(b[7:], sum[:8])
	return string(b[:])
}

// outcome is the value of dlock.outcome.
type outcome int

const (
	noOutcome outcome = iota
	granted
	notAcquired
	refreshed
	failed
	released
	lost
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"", "granted", "not_acquired", "refreshed", "failed", "released", "lost"}

// errType is the value of error.type: a small fixed set, so that it can be
// a metric attribute.
type errType int

const (
	noErr            errType = iota
	busy                     // not acquired: the key was held, and nothing else went wrong
	canceled                 // the call's context was canceled
	deadlineExceeded         // the call's context deadline passed
	unavailable              // the backend could not be reached or timed out
	notHeld                  // the backend no longer held the key for this lease
	expired                  // a loss: renewal was not confirmed before the lease's local deadline
	closed                   // the Locker was closed
	invalid                  // a bad argument or option
	other                    // anything else, such as a backend's refusal
	numErrTypes
)

var errTypeNames = [numErrTypes]string{"", "busy", "canceled", "deadline_exceeded", "unavailable", "not_held", "expired", "closed", "invalid", "_OTHER"}

// errorType classifies the error of a call or a renewal by dlock's sentinels.
func errorType(err error) errType {
	switch {
	case err == nil:
		return noErr
	case errors.Is(err, context.Canceled):
		return canceled
	case errors.Is(err, context.DeadlineExceeded):
		return deadlineExceeded
	case errors.Is(err, dlock.ErrInvalid):
		return invalid
	case errors.Is(err, dlock.ErrClosed):
		return closed
	case errors.Is(err, dlock.ErrUnavailable), isTimeout(err):
		return unavailable
	case errors.Is(err, dlock.ErrNotHeld):
		return notHeld
	case onlyCause(err, dlock.ErrNotAcquired):
		return busy
	}
	return other
}

// isTimeout reports a timeout error, such as a net.Error's, as the root
// does when it decides to retry.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// lossType classifies the cause of a lost lease. A loss that is neither the
// backend's answer nor Close is the local deadline passing: the root keeps
// that cause unexported.
func lossType(err error) errType {
	switch {
	case errors.Is(err, dlock.ErrClosed):
		return closed
	case errors.Is(err, dlock.ErrNotHeld):
		return notHeld
	}
	return expired
}

// onlyCause reports whether every error at the end of err's chain is
// target: ErrNotAcquired alone means the key was busy, while ErrNotAcquired
// with a driver's error beside it means the driver failed.
func onlyCause(err, target error) bool {
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return onlyCause(u.Unwrap(), target)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if !onlyCause(e, target) {
				return false
			}
		}
		return true
	}
	return err == target
}
