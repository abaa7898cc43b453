package main

import "time"

// Results is the whole run, as written to -out.
type Results struct {
	Command  string          `json:"command"`
	Started  time.Time       `json:"started"`
	Took     string          `json:"took"`
	Machine  Machine         `json:"machine"`
	Settings map[string]any  `json:"settings"`
	Libs     []libSpec       `json:"libraries"`
	Layouts  []*LayoutResult `json:"layouts"`
	Targets  []Target        `json:"targets"`
}

// LayoutResult is what the client role measured in one CPU layout.
type LayoutResult struct {
	Layout     string `json:"layout"`
	ServerCPU  string `json:"server_cpu"`
	ClientCPU  string `json:"client_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	// RTT is the median over all PING blocks of the layout.
	RTTus   float64       `json:"ping_rtt_p50_us"`
	Pairs   []*PairRow    `json:"pairs"`
	Handoff []*HandoffRow `json:"handoff"`
	Killed  []*KilledRow  `json:"holder_killed"`
	Renewal []*RenewRow   `json:"renewal"`
	// The etcd section: its pairs are in Pairs (scenarios etcd-*); its
	// round trip is a linearizable Get's.
	EtcdRTTus   float64       `json:"etcd_get_rtt_p50_us,omitempty"`
	EtcdHandoff []*HandoffRow `json:"etcd_handoff,omitempty"`
	Errors      []string      `json:"errors,omitempty"`
}

// PairSample is one measured block of try-acquire+release pairs, with the
// PING round trip measured right before and after it.
type PairSample struct {
	Pairs         int     `json:"pairs"`
	Busy          int     `json:"busy"`
	Errors        int     `json:"errors"`
	Seconds       float64 `json:"seconds"`
	PairsPerSec   float64 `json:"pairs_per_s"`
	P50us         float64 `json:"p50_us"`
	P99us         float64 `json:"p99_us"`
	AllocsPerPair float64 `json:"allocs_per_pair"`
	BytesPerPair  float64 `json:"bytes_per_pair"`
	// CPU time per pair: of every redis-server (scheduler accounting,
	// network syscalls included) and of the client process.
	ServerCPUus float64 `json:"server_cpu_us_per_pair"`
	ClientCPUus float64 `json:"client_cpu_us_per_pair"`
	RTTus       float64 `json:"rtt_us"`
	Ratio       float64 `json:"p50_over_rtt"`
}

// PairRow is one library in one pair scenario: medians over the repeats.
type PairRow struct {
	Scenario   string `json:"scenario"`
	Lib        string `json:"lib"`
	Config     string `json:"config"`
	Nodes      int    `json:"nodes"`
	Goroutines int    `json:"goroutines"`
	PairSample
	Repeats []PairSample `json:"repeats"`
}

// HandoffSample is one handoff block.
type HandoffSample struct {
	Handoffs   int     `json:"handoffs"`
	Self       int     `json:"self_reacquires"`
	Violations int     `json:"overlaps"`
	Errors     int     `json:"errors"`
	Seconds    float64 `json:"seconds"`
	PerSec     float64 `json:"grants_per_s"`
	P50us      float64 `json:"gap_from_release_call_p50_us"`
	P99us      float64 `json:"gap_from_release_call_p99_us"`
	RetP50us   float64 `json:"gap_from_release_return_p50_us"`
	RetP99us   float64 `json:"gap_from_release_return_p99_us"`
	RTTus      float64 `json:"rtt_us"`
	Ratio      float64 `json:"p50_over_rtt"`
	ReleaseP50 float64 `json:"release_call_p50_us"`
	// Server work per grant: script calls (acquire attempts, releases,
	// renewals) and every command Redis counted, scripts' inner ones
	// included.
	ScriptsPerGrant float64 `json:"scripts_per_grant"`
	// ReadsPerGrant is the server's read events (INFO stats
	// total_reads_processed) per grant: about the round trips it served
	// (requests here are small; a read takes up to 16 KiB).
	ReadsPerGrant float64 `json:"server_reads_per_grant"`
	// XMinimal is the gap p50 over the minimal lock's in the same repeat
	// (the row's figure is the median of the per-repeat ratios).
	XMinimal float64 `json:"gap_p50_over_minimal"`
	// Fairness: FIFOShare is the share of handoffs, among those with two
	// or more processes waiting at the release call, that went to the
	// one that called Lock first; WaitP50us and WaitP99us run from a Lock
	// call to its grant; GrantsMinMax is the fewest grants of a process
	// over the most.
	FIFOShare        float64            `json:"fifo_share"`
	WaitP50us        float64            `json:"wait_p50_us"`
	WaitP99us        float64            `json:"wait_p99_us"`
	GrantsMinMax     float64            `json:"grants_min_over_max"`
	CommandsPerGrant map[string]float64 `json:"commands_per_grant,omitempty"`
}

// HandoffRow is one library in the handoff scenario.
type HandoffRow struct {
	Lib    string  `json:"lib"`
	Config string  `json:"config"`
	Procs  int     `json:"processes"`
	HoldUs float64 `json:"hold_us"`
	// FailedBlocks counts repeats whose block failed to run (errors of
	// blocks that ran are in Errors, per repeat).
	FailedBlocks int `json:"failed_blocks"`
	HandoffSample
	Repeats []HandoffSample `json:"repeats"`
}

// KilledRow is one library in the holder-killed scenario.
type KilledRow struct {
	Lib    string    `json:"lib"`
	Config string    `json:"config"`
	TTLms  float64   `json:"ttl_ms"`
	Trials int       `json:"trials"`
	GapsMs []float64 `json:"gaps_ms"`
	P50ms  float64   `json:"gap_p50_ms"`
	MaxMs  float64   `json:"gap_max_ms"`
	MeanMs float64   `json:"gap_mean_ms"`
	Errors []string  `json:"errors,omitempty"`
	// KillAfterMs are the kill moments, from the holder's acquire
	// returning (each after its library's first renewal).
	KillAfterMs []float64 `json:"kill_after_acquire_ms"`
}

// RenewRow is one library in the renewal-at-scale scenario.
type RenewRow struct {
	Lib             string  `json:"lib"`
	Config          string  `json:"config"`
	Nodes           int     `json:"nodes"`
	Leases          int     `json:"leases"`
	Acquired        int     `json:"acquired"`
	Seconds         float64 `json:"seconds"`
	TTLms           float64 `json:"ttl_ms"`
	RenewEveryMs    float64 `json:"renew_every_ms"`
	Periods         float64 `json:"renew_periods"`
	GoroutinesIdle  int     `json:"goroutines_idle"`
	GoroutinesMax   int     `json:"goroutines_max_while_held"`
	GoroutinesAfter int     `json:"goroutines_after_release"`
	// The same library holding a tenth of the leases, briefly.
	SmallLeases        int     `json:"small_run_leases"`
	GoroutinesMaxSmall int     `json:"small_run_goroutines_max"`
	ScriptsPerNode     float64 `json:"script_calls_per_period_per_node"`
	RoundTrips         float64 `json:"round_trips_per_period_per_node"`
	RoundTripsPer1k    float64 `json:"round_trips_per_period_per_node_per_1000_leases"`
	RoundTripsCounted  bool    `json:"round_trips_counted"`
	// Reads counted on the server (INFO stats total_reads_processed), for
	// every library, go-redis or not: the busiest node's reads per period.
	// A read takes up to 16 KiB, so a pipeline of 1,000 renewals is
	// several.
	ServerReads      float64 `json:"server_reads_per_period_per_node"`
	ServerReadsPer1k float64 `json:"server_reads_per_period_per_node_per_1000_leases"`
	Lost             int     `json:"lost"`
	AcquireSeconds   float64 `json:"acquire_seconds"`
	CPUSeconds       float64 `json:"client_cpu_seconds"`
}

// Target is one of the targets, checked on the run.
type Target struct {
	Layout string `json:"layout"`
	Name   string `json:"target"`
	Pass   bool   `json:"pass"`
	Figure string `json:"figure"`
}
