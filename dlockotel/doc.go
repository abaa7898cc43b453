// Package dlockotel records the events of dlock's locks as OpenTelemetry
// metrics and spans. It uses the OpenTelemetry API only: the program
// supplies the MeterProvider and TracerProvider (an SDK with an exporter),
// or the global ones are used.
//
//	obs, err := dlockotel.New(&dlockotel.Options{Driver: "redis"})
//	...
//	locker, err := redisdriver.New(client, &redisdriver.Options{Lock: &dlock.Options{Observer: obs.Observe}})
//
// # Metrics
//
// Names and units follow the OpenTelemetry semantic-convention style; a
// Prometheus exporter shows dlock.acquire.duration as
// dlock_acquire_duration_seconds and dlock.lease.grants as
// dlock_lease_grants_total.
//
//	Name                          Instrument     Unit       Attributes
//	dlock.acquire.duration        Histogram      s          dlock.outcome (granted, not_acquired), error.type
//	dlock.acquire.busy_attempts   Counter        {attempt}
//	dlock.lease.grants            Counter        {lease}
//	dlock.lease.held              UpDownCounter  {lease}
//	dlock.lease.duration          Histogram      s          dlock.outcome (released, lost), error.type
//	dlock.lease.losses            Counter        {lease}    error.type (not_held, expired, closed)
//	dlock.lease.refresh.duration  Histogram      s          dlock.outcome (refreshed, failed), error.type
//	dlock.lease.refresh.failures  Counter        {refresh}  error.type
//	dlock.election.leader         UpDownCounter  {election}
//
// Every metric also carries dlock.driver when [Options].Driver is set, and
// dlock.key when [Options].MetricKey asks for it (by default it does not:
// every key would be a time series).
//
// dlock.acquire.duration measures whole calls, waiting for the key
// included: for granted calls it is the wait time. dlock.lease.held goes
// up on each grant and down on each release or loss, so it counts leases
// held right now; dlock.election.leader likewise counts the elections this
// process leads. dlock.lease.duration measures from the acquire attempt that
// won to the release, or to the loss for a lease that was lost; the release
// of a lost lease is not counted again.
//
// Two gaps of the Locker's reports show in dlock.lease.held: leases still
// held when their Locker is closed are not reported as ended, and a lease
// that the backend had already freed when it was released (its clock ran
// fast, or the key was deleted) is not reported as lost; each stays counted
// as held.
//
// error.type is one of: busy (the key was held and nothing else went wrong,
// so TryAcquire or the retry strategy gave up), canceled and
// deadline_exceeded (the call's context), unavailable (the backend could
// not be reached or timed out), not_held (the backend no longer held the
// key for the lease: expired there or taken over), expired (a loss:
// renewal was not confirmed before the lease's local deadline), closed,
// invalid, and _OTHER.
//
// # Spans
//
// The Locker reports a call when it is over, so each span is started then,
// back-dated by the call's duration, as a child of the span in the call's
// context:
//
//	dlock.acquire  an Acquire or TryAcquire call, waiting included
//	dlock.lease    a lease, from the acquire attempt that won to its
//	               release or loss; a child of the acquire's parent
//
// Their attributes are dlock.outcome, dlock.owner, dlock.driver, dlock.key
// (hashed by default, see [Options].SpanKey), dlock.lease.fence,
// dlock.semaphore.limit for the leases of a semaphore, and, on failure,
// error.type. A failure sets the span's status to Error, except
// busy: an answer, not a failure. Error texts are recorded only when
// [Options].ErrorMessages is set.
//
// # Safety
//
// Tokens never reach telemetry: [dlock.Event] does not carry them. Keys
// are hashed in spans and left out of metrics unless the options say
// otherwise. Error texts, which name keys and quote backends, stay out of
// spans unless asked for. Owner names (host:pid by default) appear on spans;
// they are not secret.
//
// # Prometheus
//
// A program that serves Prometheus wires the exporter into an SDK
// MeterProvider (go.opentelemetry.io/otel/exporters/prometheus and
// go.opentelemetry.io/otel/sdk/metric; dlockotel imports neither):
//
//	exporter, err := prometheus.New() // registers with prometheus.DefaultRegisterer
//	if err != nil {
//		log.Fatal(err)
//	}
//	provider := metric.NewMeterProvider(metric.WithReader(exporter))
//	defer provider.Shutdown(context.Background())
//	obs, err := dlockotel.New(&dlockotel.Options{MeterProvider: provider, Driver: "redis"})
//	if err != nil {
//		log.Fatal(err)
//	}
//	locker, err := redisdriver.New(client, &redisdriver.Options{Lock: &dlock.Options{Observer: obs.Observe}})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer locker.Close()
//	http.Handle("/metrics", promhttp.Handler())
//
// The example of [New] shows the same wiring with the SDK's in-memory
// reader.
package dlockotel
