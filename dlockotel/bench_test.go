package dlockotel_test

import (
	"context"
	"testing"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/dlockotel"
	"github.com/dlock-go/dlock/memdriver"
)

// BenchmarkPairOTel is the root's BenchmarkPair (a TryAcquire + Release
// pair on memdriver) with an Observer on no-op providers, on the SDK with
// metrics only, and on the SDK with metrics and sampled spans exported to a
// no-op exporter; with the default key modes unless the name says Raw.
func BenchmarkPairOTel(b *testing.B) {
	sdkMetrics := func(b *testing.B) *sdkmetric.MeterProvider {
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() { mp.Shutdown(context.Background()) })
		return mp
	}
	sdkTraces := func(b *testing.B) *sdktrace.TracerProvider {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()))
		b.Cleanup(func() { tp.Shutdown(context.Background()) })
		return tp
	}
	for _, bc := range []struct {
		name string
		opts func(b *testing.B) *dlockotel.Options // nil: no Observer
	}{
		{"NoObserver", nil},
		{"NoopProviders", func(b *testing.B) *dlockotel.Options {
			return &dlockotel.Options{MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider()}
		}},
		{"SDKMetrics", func(b *testing.B) *dlockotel.Options {
			return &dlockotel.Options{MeterProvider: sdkMetrics(b), TracerProvider: tracenoop.NewTracerProvider(), Driver: "mem"}
		}},
		{"SDKMetricsRawKey", func(b *testing.B) *dlockotel.Options {
			return &dlockotel.Options{MeterProvider: sdkMetrics(b), TracerProvider: tracenoop.NewTracerProvider(), Driver: "mem", MetricKey: dlockotel.KeyRaw}
		}},
		{"SDKMetricsAndSpans", func(b *testing.B) *dlockotel.Options {
			return &dlockotel.Options{MeterProvider: sdkMetrics(b), TracerProvider: sdkTraces(b), Driver: "mem"}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var opts *dlock.Options
			if bc.opts != nil {
				obs, err := dlockotel.New(bc.opts(b))
				if err != nil {
					b.Fatal(err)
				}
				opts = &dlock.Options{Observer: obs.Observe}
			}
			l := memdriver.New(opts)
			defer l.Close()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				lease, err := l.TryAcquire(ctx, "bench", nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := lease.Release(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
