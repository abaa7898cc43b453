package dlockotel_test

import (
	"context"
	"fmt"
	"log"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/dlockotel"
	"github.com/dlock-go/dlock/memdriver"
)

// A program wires the Observer into its MeterProvider. This one reads the
// metrics back with the SDK's in-memory reader; a service would use a
// Prometheus exporter there instead (see the package doc) or an OTLP one.
func ExampleNew() {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(context.Background())

	obs, err := dlockotel.New(&dlockotel.Options{MeterProvider: provider, Driver: "mem"})
	if err != nil {
		log.Fatal(err)
	}
	locker := memdriver.New(&dlock.Options{Observer: obs.Observe})
	defer locker.Close()

	ctx := context.Background()
	err = locker.Do(ctx, "nightly-report", nil, func(ctx context.Context, lease *dlock.Lease) error {
		return nil // the work, under the lock
	})
	if err != nil {
		log.Fatal(err)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		log.Fatal(err)
	}
	var lines []string
	for _, m := range rm.ScopeMetrics[0].Metrics {
		switch d := m.Data.(type) {
		case metricdata.Histogram[float64]:
			for _, p := range d.DataPoints {
				lines = append(lines, fmt.Sprintf("%s{%s} count %d", m.Name, p.Attributes.Encoded(attribute.DefaultEncoder()), p.Count))
			}
		case metricdata.Sum[int64]:
			for _, p := range d.DataPoints {
				lines = append(lines, fmt.Sprintf("%s{%s} %d", m.Name, p.Attributes.Encoded(attribute.DefaultEncoder()), p.Value))
			}
		}
	}
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// dlock.acquire.duration{dlock.driver=mem,dlock.outcome=granted} count 1
	// dlock.lease.duration{dlock.driver=mem,dlock.outcome=released} count 1
	// dlock.lease.grants{dlock.driver=mem} 1
	// dlock.lease.held{dlock.driver=mem} 0
}
