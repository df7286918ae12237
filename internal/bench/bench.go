// Package bench measures orkstate on a real PostgreSQL against baselines run in
// the same process, on the same database, at the same time:
//
//   - ork-v1: the original store (Ork's ork-state, github.com/gajop/ork) — its
//     schema as its migrations 001–012 leave it (UUID keys, every index) and the
//     statements its code sends, in the same order and batching, each beside its
//     source line (orkv1.go), driven as its one scheduler loop drives it; at its
//     default batch of 100 and at 1,000. The calibration scenario measures its
//     batch status update and dispatch query alone.
//   - the same-write floor: plain SQL doing exactly the writes orkstate makes for a
//     report of successes; and the bare UPDATE of the status column (not the same
//     work: a quarter of it), the table's physical limit.
//   - River: no-op jobs inserted with InsertMany (on the clock) and worked by a River
//     client; orkstate's own triggerer on River for deferred jobs; graphile-worker
//     when node and npm are on the machine.
//
// Every measurement is repeated (Sizes.Reps) and reported as the median with its
// spread, p50/p99 over every sample (no p99 from fewer than 20), WAL bytes, Go
// allocations and on-disk bytes per item, duplicates and losses, and the ratio of
// orkstate to each baseline's best configuration. Every scenario installs into a
// fresh schema (dropped afterwards). Run prints a table, and Report.Write puts JSON
// and an SVG chart in a directory; ReadmeTable renders the README's table from them.
//
// bench is a program, not a test: nothing here is timed inside `go test` (the
// smoke test only checks that tiny runs work).
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate/pgstore"
)

// Systems measured. Results of SystemOrkstate get ratios to the others.
const (
	SystemOrkstate = "orkstate"
	SystemOrkV1    = "ork-v1"
	SystemRiver    = "river"
	// SystemFloor is plain SQL doing exactly the writes orkstate makes: the floor
	// of the same work. SystemRaw is a bare UPDATE of the status column: a quarter
	// of the writes, not the same work, kept as the table's physical limit.
	SystemFloor  = "same-write floor"
	SystemRaw    = "bare UPDATE"
	SystemSQLite = "sqlitecompat"
	// SystemTriggerer is orkstate's own triggerer polling deferred jobs as River jobs.
	SystemTriggerer = "orkstate triggerer on River"
)

// Sizes are the knobs of every scenario. QuickSizes, FullSizes and TinySizes are
// the presets; any field may be changed.
type Sizes struct {
	// Batch status updates: tasks in chains (each success unblocks the next link).
	BatchTasks   int
	BatchV1Tasks int // ork-v1 is run on fewer tasks: it would take minutes otherwise
	BatchSize    int

	// Claims: ready tasks claimed by 1, 2, 4, 8 claimers.
	ClaimTasks   int
	ClaimV1Tasks int
	ClaimBatch   int
	Claimers     []int

	// Claim latency with blocked tasks in the table.
	Blocked      []int
	LatencyReady int // ready tasks claimed (in batches of ClaimBatch) per blocked size
	V1Polls      int // dispatch polls timed for ork-v1 per blocked size

	// End-to-end DAG runs.
	E2ERuns      int // runs per shape; each run has 100 tasks
	E2EV1Runs    int
	E2ESQLite    int // runs on sqlitecompat
	Schedulers   int
	RiverWorkers int

	// Deferred jobs.
	DeferredJobs int // through the SQL claim and through the triggerer on River alike
	Pollers      int

	// Wake-up latency samples.
	WakeSamples int

	// Calibration of ork-v1: rows of single-row UPDATEs (in transactions of 1,000),
	// and pending tasks under the dispatch query (polled V1Polls times).
	CalibUpdates int
	CalibPending int

	// Failure paths: runs per system (10% of tasks fail once, 1 run in 20 cancelled).
	FailureRuns      int
	FailureV1Runs    int
	FailureV1Batches []int // ork-v1's batch sizes (one scheduler)

	// Open loop: seconds runs arrive for, at each fraction of the measured maximum.
	OpenLoopSeconds float64
	OpenLoopLoads   []float64
	OpenLoopV1      bool // ork-v1 too, at the same fractions of its own maximum

	// Aged install: finished tasks of history (0: not run; full mode only).
	AgedTasks int

	// Churn under retention: tasks run through one install while a purger keeps the
	// runs of the last ChurnWindow tasks (0: not run); ChurnCompare adds the variants
	// without the purge's VACUUM.
	ChurnTasks   int
	ChurnWindow  int
	ChurnCompare bool

	// V1ExtraSchedulers, above 1, adds an ork-v1 variant with that many scheduler
	// loops at once to claims and e2e (the original runs one).
	V1ExtraSchedulers int

	// Reps is how many times each measurement is repeated (median and spread reported).
	Reps int
}

// QuickSizes is `make bench`: every scenario in about three minutes on two cores.
func QuickSizes() Sizes {
	return Sizes{
		BatchTasks: 30_000, BatchV1Tasks: 3_000, BatchSize: 1000,
		ClaimTasks: 30_000, ClaimV1Tasks: 3_000, ClaimBatch: 1000, Claimers: []int{1, 2, 4, 8},
		Blocked: []int{0, 100_000}, LatencyReady: 10_000, V1Polls: 3,
		E2ERuns: 100, E2EV1Runs: 10, E2ESQLite: 30, Schedulers: 4, RiverWorkers: 1000,
		DeferredJobs: 5_000, Pollers: 2,
		WakeSamples:  30,
		CalibUpdates: 5_000, CalibPending: 100_000,
		FailureRuns: 40, FailureV1Runs: 5, FailureV1Batches: []int{100},
		OpenLoopSeconds: 2, OpenLoopLoads: []float64{0.5, 0.8},
		ChurnTasks: 60_000, ChurnWindow: 20_000,
		Reps: 3,
	}
}

// FullSizes is `make bench-full`: a million blocked tasks, bigger batches of work,
// longer DAG sets, an aged install with a million finished tasks.
func FullSizes() Sizes {
	s := QuickSizes()
	s.BatchTasks, s.BatchV1Tasks = 200_000, 10_000
	s.ClaimTasks, s.ClaimV1Tasks = 100_000, 10_000
	s.Blocked = []int{0, 100_000, 1_000_000}
	s.LatencyReady = 30_000
	s.E2ERuns, s.E2EV1Runs, s.E2ESQLite = 500, 30, 100
	s.DeferredJobs = 20_000
	s.WakeSamples = 100
	s.CalibUpdates = 20_000
	s.FailureRuns, s.FailureV1Runs, s.FailureV1Batches = 200, 20, []int{100, 1000}
	s.OpenLoopSeconds, s.OpenLoopV1 = 10, true
	s.AgedTasks = 1_000_000
	// ChurnCompare (the variants without the purge's VACUUM) is left to custom runs,
	// and so is the 2M-task churn: about 3.4k tasks/s on two cores makes 1M five
	// minutes (-full -set ChurnTasks=2000000 for the longer one).
	s.ChurnTasks, s.ChurnWindow = 1_000_000, 100_000
	s.V1ExtraSchedulers = 4
	return s
}

// TinySizes runs every code path in seconds, once; the smoke test uses it.
func TinySizes() Sizes {
	return Sizes{
		BatchTasks: 200, BatchV1Tasks: 200, BatchSize: 50,
		ClaimTasks: 200, ClaimV1Tasks: 100, ClaimBatch: 50, Claimers: []int{1, 2},
		Blocked: []int{0, 200}, LatencyReady: 100, V1Polls: 2,
		E2ERuns: 2, E2EV1Runs: 1, E2ESQLite: 1, Schedulers: 2, RiverWorkers: 10,
		DeferredJobs: 50, Pollers: 2,
		WakeSamples:  2,
		CalibUpdates: 1000, CalibPending: 500,
		FailureRuns: 20, FailureV1Runs: 20, FailureV1Batches: []int{100},
		OpenLoopSeconds: 1, OpenLoopLoads: []float64{0.5}, OpenLoopV1: true,
		ChurnTasks: 800, ChurnWindow: 400,
		V1ExtraSchedulers: 2,
		Reps:              1,
	}
}

// Config configures Run.
type Config struct {
	// Pool is the database; every scenario installs into a fresh schema of it. Required.
	Pool *pgxpool.Pool
	// Sizes of the scenarios. Defaults to QuickSizes().
	Sizes *Sizes
	// Only, when not empty, keeps the scenarios whose names it lists (see Scenarios).
	Only []string
	// Progress receives a line per step while the benchmark runs. Defaults to io.Discard.
	Progress io.Writer
	// Mode names the preset in the report ("quick", "full", …). Defaults to "custom".
	Mode string
}

// Result is one measurement: one system on one scenario variant.
type Result struct {
	Scenario string `json:"scenario"`
	Variant  string `json:"variant,omitempty"`
	System   string `json:"system"`
	// Items is how many units were processed (tasks, transitions, jobs, wake-ups).
	Items int    `json:"items"`
	Unit  string `json:"unit"`
	// Seconds is the wall time of the measured part; Throughput = Items / Seconds.
	Seconds    float64 `json:"seconds"`
	Throughput float64 `json:"throughput"`
	// P50Ms and P99Ms are latencies in milliseconds of what LatencyOf names.
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	LatencyOf string  `json:"latency_of,omitempty"`
	// Duplicates counts items processed more than once (a task dispatched twice);
	// Losses counts items that should have been processed and were not.
	Duplicates int `json:"duplicates"`
	Losses     int `json:"losses"`
	// Config names the baseline's configuration (ork-v1: schedulers and batch);
	// ratios use the best configuration of a baseline.
	Config string `json:"config,omitempty"`
	// Reps is how many repetitions the figures come from: Throughput is the median
	// repetition's, ThroughputMin/Max the spread; latencies pool every sample
	// (Samples of them; P99Ms is 0, printed n/a, under 20).
	Reps          int     `json:"reps,omitempty"`
	ThroughputMin float64 `json:"throughput_min,omitempty"`
	ThroughputMax float64 `json:"throughput_max,omitempty"`
	Samples       int     `json:"samples,omitempty"`
	// Per item, medians over the repetitions: WAL bytes written (the server's WAL
	// position around the clocked part), Go heap allocations of this process, and the
	// on-disk bytes of the system's tables (heap, indexes, TOAST) per finished item.
	WALBytesPerItem  float64 `json:"wal_bytes_per_item,omitempty"`
	AllocsPerItem    float64 `json:"allocs_per_item,omitempty"`
	DiskBytesPerItem float64 `json:"disk_bytes_per_item,omitempty"`
	// CPU time per item, medians over the repetitions: the whole machine's busy time
	// (the server's backends, this process, and anything else running: measure on a
	// quiet machine) and this process's part of it. On a machine whose cores are all
	// busy, throughput is about the cores ÷ CPUMicrosPerItem.
	CPUMicrosPerItem   float64 `json:"cpu_us_per_item,omitempty"`
	GoCPUMicrosPerItem float64 `json:"go_cpu_us_per_item,omitempty"`
	// Ratios of this result to baselines: "x ork-v1" is orkstate's throughput over
	// ork-v1's; "of raw" is orkstate's throughput as a fraction of the raw ceiling.
	Ratios map[string]float64 `json:"ratios,omitempty"`
	Note   string             `json:"note,omitempty"`
	Error  string             `json:"error,omitempty"`
}

// Target is one of the performance goals of the project, checked against results.
type Target struct {
	Goal   string  `json:"goal"`
	Value  float64 `json:"value"`
	Want   string  `json:"want"`
	Met    bool    `json:"met"`
	Detail string  `json:"detail,omitempty"`
}

// Report is what Run measured.
type Report struct {
	Mode      string    `json:"mode"`
	StartedAt time.Time `json:"started_at"`
	Seconds   float64   `json:"seconds"`
	Machine   Machine   `json:"machine"`
	Sizes     Sizes     `json:"sizes"`
	Results   []Result  `json:"results"`
	Targets   []Target  `json:"targets"`
	Missing   []string  `json:"missing,omitempty"`
}

// Machine describes where the numbers come from.
type Machine struct {
	CPUs       int    `json:"cpus"`
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	GoVersion  string `json:"go_version"`
	Postgres   string `json:"postgres"`
	CPUModel   string `json:"cpu_model,omitempty"`
	SyncCommit string `json:"synchronous_commit,omitempty"`
	// The server settings that move the numbers.
	Autovacuum     string `json:"autovacuum,omitempty"`
	SharedBuffers  string `json:"shared_buffers,omitempty"`
	WALCompression string `json:"wal_compression,omitempty"`
	MaxWALSize     string `json:"max_wal_size,omitempty"`
	// Commit is the source measured (git HEAD, "+dirty" with uncommitted changes).
	Commit string `json:"commit,omitempty"`
}

// scenario is one named step of the run.
type scenario struct {
	name string
	desc string
	run  func(ctx context.Context, r *runner) error
}

// Scenarios lists the scenario names in run order, for Config.Only.
func Scenarios() []string {
	var names []string
	for _, s := range allScenarios() {
		names = append(names, s.name)
	}
	return names
}

func allScenarios() []scenario {
	return []scenario{
		{name: "batch_status", desc: "batch status updates with dependency propagation", run: runBatchStatus},
		{name: "calibration", desc: "ork-v1's batch update and dispatch query alone, against a replay of the original", run: runCalibration},
		{name: "claims", desc: "claim throughput with 1, 2, 4, 8 claimers", run: runClaims},
		{name: "claim_latency", desc: "claim latency with blocked tasks", run: runClaimLatency},
		{name: "e2e", desc: "end-to-end DAG runs with simulated schedulers", run: runE2E},
		{name: "graphile", desc: "graphile-worker no-op jobs (when node and npm are installed)", run: runGraphile},
		{name: "failures", desc: "end-to-end runs with failures, retries and cancellations", run: runFailures},
		{name: "open_loop", desc: "runs arriving at a fixed rate: latency under 50% and 80% load", run: runOpenLoop},
		{name: "aged", desc: "claims and e2e on an install with 1M finished tasks while a purge runs, autovacuum on (full mode)", run: runAged},
		{name: "churn", desc: "tasks run through an install under a retention window: its size against the live rows freshly loaded", run: runChurn},
		{name: "deferred", desc: "deferred polls through the SQL claim and through River", run: runDeferred},
		{name: "wakeup", desc: "wake-up latency, NOTIFY against polling", run: runWakeup},
		{name: "sqlite", desc: "end-to-end DAG runs on sqlitecompat", run: runSQLiteE2E},
		{name: "priorities", desc: "claims with priorities and limits, and with tasks a full key holds back", run: runPriorities},
		{name: "snapshot", desc: "claim latency under an open-loop load, clean and with a snapshot held open", run: runSnapshot},
		{name: "server_settings", desc: "e2e and batch success under wal_compression, max_wal_size, checkpoint_timeout (ALTER SYSTEM, restored)", run: runServerSettings},
	}
}

// runner carries what scenarios share.
type runner struct {
	pool     *pgxpool.Pool
	sizes    Sizes
	progress io.Writer
	start    time.Time
	results  []Result
	missing  []string
	seq      atomic.Int64
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.progress, "[%6.1fs] %s\n", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
}

// add records a result and prints it as progress.
func (r *runner) add(res Result) {
	if res.Seconds > 0 && res.Throughput == 0 {
		res.Throughput = float64(res.Items) / res.Seconds
	}
	r.results = append(r.results, res)
	line := fmt.Sprintf("  %-14s %-22s %-12s %12s %s/s  p50 %s p99 %s", res.Scenario, res.Variant, res.System,
		humanInt(res.Throughput), res.Unit, fmtMs(res.P50Ms), fmtMs(res.P99Ms))
	if res.Duplicates > 0 || res.Losses > 0 {
		line += fmt.Sprintf("  dup %d lost %d", res.Duplicates, res.Losses)
	}
	if res.Error != "" {
		line += "  ERROR: " + res.Error
	}
	r.logf("%s", line)
}

// schemaName returns a fresh schema name for this process.
func (r *runner) schemaName(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, os.Getpid()%100000, r.seq.Add(1))
}

// install creates a fresh orkstate install and returns its Store and a drop func.
func (r *runner) install(ctx context.Context) (*pgstore.Store, func(), error) {
	schema := r.schemaName("bench")
	drop := func() { dropSchema(context.WithoutCancel(ctx), r.pool, schema) }
	if err := pgstore.Migrate(ctx, r.pool, schema); err != nil {
		drop()
		return nil, func() {}, err
	}
	s, err := pgstore.New(r.pool, &pgstore.Config{Schema: schema})
	if err != nil {
		drop()
		return nil, func() {}, err
	}
	return s, drop, nil
}

// dropSchema removes an install (or a baseline schema) with everything in it.
func dropSchema(ctx context.Context, pool *pgxpool.Pool, schema string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, q := range []string{
		"drop schema if exists " + schema + "_api cascade",
		"drop schema if exists " + schema + " cascade",
		"drop table if exists " + pgstore.VersionTable(schema),
	} {
		_, _ = pool.Exec(ctx, q)
	}
}

// Run runs the scenarios and returns the report. A scenario that fails is
// recorded with its error and the others still run; Run's error is for what
// stops everything (no database, a cancelled context).
func Run(ctx context.Context, cfg *Config) (*Report, error) {
	if cfg == nil || cfg.Pool == nil {
		return nil, fmt.Errorf("bench: Config.Pool is required")
	}
	sizes := QuickSizes()
	if cfg.Sizes != nil {
		sizes = *cfg.Sizes
	}
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	for _, name := range cfg.Only {
		if !slices.Contains(Scenarios(), name) {
			return nil, fmt.Errorf("bench: unknown scenario %q (have %s)", name, strings.Join(Scenarios(), ", "))
		}
	}
	if err := cfg.Pool.Ping(ctx); err != nil {
		return nil, fmt.Errorf("bench: database unreachable: %w", err)
	}
	r := &runner{pool: cfg.Pool, sizes: sizes, progress: progress, start: time.Now()}
	rep := &Report{Mode: cfg.Mode, StartedAt: r.start, Sizes: sizes, Machine: machine(ctx, cfg.Pool)}
	if rep.Mode == "" {
		rep.Mode = "custom"
	}
	r.logf("orkstate bench (%s): %d CPUs, %s", rep.Mode, rep.Machine.CPUs, rep.Machine.Postgres)
	scs := allScenarios()
	for i, sc := range scs {
		if len(cfg.Only) > 0 && !slices.Contains(cfg.Only, sc.name) {
			continue
		}
		r.logf("[%d/%d] %s: %s", i+1, len(scs), sc.name, sc.desc)
		if err := sc.run(ctx, r); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			r.add(Result{Scenario: sc.name, System: SystemOrkstate, Error: err.Error()})
		}
	}
	rep.Results = r.results
	rep.Missing = r.missing
	computeRatios(rep.Results)
	rep.Targets = checkTargets(rep.Results)
	rep.Seconds = time.Since(r.start).Seconds()
	r.logf("done in %.1fs", rep.Seconds)
	return rep, nil
}

func machine(ctx context.Context, pool *pgxpool.Pool) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, GoVersion: runtime.Version()}
	_ = pool.QueryRow(ctx, `select current_setting('server_version'), current_setting('synchronous_commit'),
		current_setting('autovacuum'), current_setting('shared_buffers'), current_setting('wal_compression'),
		current_setting('max_wal_size')`).Scan(&m.Postgres, &m.SyncCommit, &m.Autovacuum, &m.SharedBuffers,
		&m.WALCompression, &m.MaxWALSize)
	m.Commit = gitCommit()
	m.Postgres = "PostgreSQL " + m.Postgres
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// percentiles returns p50 and p99 of durations, in milliseconds.
func percentiles(ds []time.Duration) (p50, p99 float64) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) float64 {
		i := int(q*float64(len(s))+0.5) - 1
		i = max(0, min(len(s)-1, i))
		return float64(s[i].Microseconds()) / 1000
	}
	return at(0.50), at(0.99)
}

// gitCommit is the HEAD the benchmark runs from, "+dirty" when sources differ from it
// (internal/bench/results and README.md, which the run itself rewrites, aside).
func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	commit := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--", ".", ":!internal/bench/results", ":!README.md").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		commit += "+dirty"
	}
	return commit
}

// Set changes one field of s from "Field=value": an int, a float, a bool, or a list
// of ints or floats separated by commas. An unknown field or a bad value is an error
// naming it.
func (s *Sizes) Set(v string) error {
	name, val, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("bench: size %q: want Field=value", v)
	}
	f := reflect.ValueOf(s).Elem().FieldByName(name)
	if !f.IsValid() {
		return fmt.Errorf("bench: no size named %q (see bench.Sizes)", name)
	}
	bad := func(err error) error { return fmt.Errorf("bench: size %s=%q: %w", name, val, err) }
	switch f.Kind() {
	case reflect.Int:
		n, err := strconv.Atoi(val)
		if err != nil {
			return bad(err)
		}
		f.SetInt(int64(n))
	case reflect.Float64:
		x, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return bad(err)
		}
		f.SetFloat(x)
	case reflect.Bool:
		b, err := strconv.ParseBool(val)
		if err != nil {
			return bad(err)
		}
		f.SetBool(b)
	case reflect.Slice:
		parts := strings.Split(val, ",")
		l := reflect.MakeSlice(f.Type(), len(parts), len(parts))
		for i, p := range parts {
			switch f.Type().Elem().Kind() {
			case reflect.Int:
				n, err := strconv.Atoi(strings.TrimSpace(p))
				if err != nil {
					return bad(err)
				}
				l.Index(i).SetInt(int64(n))
			case reflect.Float64:
				x, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
				if err != nil {
					return bad(err)
				}
				l.Index(i).SetFloat(x)
			default:
				return bad(fmt.Errorf("unsupported list"))
			}
		}
		f.Set(l)
	default:
		return bad(fmt.Errorf("unsupported kind %s", f.Kind()))
	}
	return nil
}
