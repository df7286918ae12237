package triggerer

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/orkstate/orkstate"
)

// measureSize is ORKSTATE_TRIGGERER_MEASURE: the job count of the measurements
// below, which run only when it is set (they take seconds and want a quiet machine):
//
//	ORKSTATE_TRIGGERER_MEASURE=5000 go test -run TestMeasure -v ./triggerer/
func measureSize(t *testing.T) int {
	n, _ := strconv.Atoi(os.Getenv("ORKSTATE_TRIGGERER_MEASURE"))
	if n <= 0 {
		t.Skip("set ORKSTATE_TRIGGERER_MEASURE=<jobs> to measure")
	}
	return n
}

// measureWorkers is the triggerer's and River's MaxWorkers in the measurements.
const measureWorkers = 1000

// deferredFixture gives n running tasks one pending deferred job each, job id
// "job-<deferred job id>", and returns the deferred job ids.
func (b *testBundle) deferredFixture(t *testing.T, n int) []int64 {
	t.Helper()
	ctx := context.Background()
	wf, err := b.store.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "wf", ExecutorType: "x"})
	must(t, err, "CreateWorkflow")
	var ids []int64
	for off := 0; off < n; off += 1000 {
		run, err := b.store.CreateRun(ctx, wf.ID, "measure")
		must(t, err, "CreateRun")
		specs := make([]orkstate.NewTask, min(1000, n-off))
		for i := range specs {
			specs[i] = orkstate.NewTask{TaskIndex: i, TaskName: fmt.Sprintf("t%d", i), ExecutorType: "x"}
		}
		_, err = b.store.CreateDAGTasks(ctx, run.ID, specs)
		must(t, err, "CreateDAGTasks")
		claimed, err := b.store.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "m", Limit: len(specs)})
		must(t, err, "ClaimTasks")
		ups := make([]orkstate.TaskUpdate, len(claimed))
		for i, c := range claimed {
			ups[i] = orkstate.TaskUpdate{TaskID: c.ID, Status: orkstate.TaskRunning, Attempt: c.Attempt}
		}
		_, err = b.store.SetTaskStates(ctx, ups)
		must(t, err, "SetTaskStates")
		rows, err := b.pool.Query(ctx, fmt.Sprintf(`
			insert into %[1]s.deferred_jobs (task_id, service_type, job_id)
			select id, '%[2]s', 'job-' || (select coalesce(max(id), 0) from %[1]s.deferred_jobs) + row_number() over (order by id)
			from %[1]s.tasks where run_id = $1 order by id returning id`,
			b.schema, fakeServiceType), run.ID)
		must(t, err, "insert deferred jobs")
		got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		must(t, err, "insert deferred jobs")
		ids = append(ids, got...)
	}
	_, err = b.pool.Exec(ctx, "vacuum analyze "+b.schema+".deferred_jobs")
	must(t, err, "vacuum")
	return ids
}

// waitDeferredDone waits until no deferred job is open.
func (b *testBundle) waitDeferredDone(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var open int
		must(t, b.pool.QueryRow(context.Background(),
			"select count(*) from "+b.schema+".deferred_jobs where status in ('pending', 'polling')").Scan(&open), "count open")
		if open == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deferred jobs still open after %s", open, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// measureConfig is the triggerer's config for the measurements: tracker answers
// completed at the first poll; River fetches like the bench's River baseline.
func (b *testBundle) measureConfig(tracker Tracker) *Config {
	cfg := b.config(tracker)
	cfg.MaxWorkers = measureWorkers
	cfg.River = &river.Config{FetchCooldown: 5 * time.Millisecond}
	return cfg
}

func completeAtOnce() *fakeTracker {
	return newFake(func(context.Context, string, int) (orkstate.PollResult, string, error) {
		return orkstate.PollCompleted, "", nil
	})
}

// TestMeasureThroughput: deferred jobs completed on their first poll through the
// triggerer, and River's own no-op jobs, same count and workers, same process.
func TestMeasureThroughput(t *testing.T) {
	n := measureSize(t)
	ctx := context.Background()

	rb := setup(t)
	rb.pool = appPool(t, rb.pool, "measure_river_"+rb.schema)
	noop := riverNoopRate(t, rb, n)
	noopCPU := serverCPU(t, rb.pool, "measure_river_"+rb.schema)

	b := setup(t)
	ids := b.deferredFixture(t, n)
	cfg := b.measureConfig(completeAtOnce())
	cfg.Pool = appPool(t, b.pool, "measure_trig_"+b.schema)
	tr := b.start(t, cfg)
	start := time.Now()
	for off := 0; off < len(ids); off += 1000 {
		must(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			return tr.EnqueueTx(ctx, tx, ids[off:min(len(ids), off+1000)]...)
		}), "EnqueueTx")
	}
	b.waitDeferredDone(t, time.Minute)
	secs := time.Since(start).Seconds()
	var notDone int
	must(t, b.pool.QueryRow(ctx, "select count(*) from "+b.schema+".tasks where status <> 'success'").Scan(&notDone), "count tasks")
	if notDone > 0 {
		t.Errorf("%d tasks not succeeded", notDone)
	}
	rate := float64(n) / secs
	trigCPU := serverCPU(t, b.pool, "measure_trig_"+b.schema)
	t.Logf("MEASURE n=%d workers=%d: triggerer %.0f deferred jobs/s (%.2fs); River no-op %.0f jobs/s; ratio %.2f",
		n, measureWorkers, rate, secs, noop, rate/noop)
	t.Logf("MEASURE server CPU per job (the backends' CPU, Linux schedstat; -1: unreadable): triggerer %.0f µs, River no-op %.0f µs",
		trigCPU/float64(n), noopCPU/float64(n))
}

// appPool is a pool like base whose connections carry application_name app, so
// that serverCPU finds their backends.
func appPool(t *testing.T, base *pgxpool.Pool, app string) *pgxpool.Pool {
	t.Helper()
	cfg := base.Config()
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	must(t, err, "pool "+app)
	t.Cleanup(pool.Close)
	return pool
}

// serverCPU is the CPU time, in µs, that the backends with application_name app
// have used so far (read from /proc/<pid>/schedstat: the database must run on
// this machine and be readable; -n otherwise).
func serverCPU(t *testing.T, pool *pgxpool.Pool, app string) float64 {
	t.Helper()
	rows, err := pool.Query(context.Background(), "select pid from pg_stat_activity where application_name = $1", app)
	must(t, err, "backends")
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	must(t, err, "backends")
	var ns int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
		if err != nil {
			return -1
		}
		v, _ := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
		ns += v
	}
	return float64(ns) / 1e3
}

type measureNoopArgs struct{ I int }

func (measureNoopArgs) Kind() string { return "measure_noop" }

type measureNoopWorker struct {
	river.WorkerDefaults[measureNoopArgs]
}

func (measureNoopWorker) Work(context.Context, *river.Job[measureNoopArgs]) error { return nil }

// startNoopRiver starts a River client on b's pool that works no-op jobs with
// measureWorkers workers, fetching like the bench's River baseline, subscribed to
// completions (room for events of them). stop stops it.
func startNoopRiver(t *testing.T, b *testBundle, events int) (client *river.Client[pgx.Tx], completed <-chan *river.Event, stop func()) {
	t.Helper()
	ctx := context.Background()
	workers := river.NewWorkers()
	river.AddWorker(workers, measureNoopWorker{})
	client, err := river.NewClient(riverpgxv5.New(b.pool), &river.Config{
		Schema:        b.schema,
		Queues:        map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: measureWorkers}},
		Workers:       workers,
		FetchCooldown: 5 * time.Millisecond,
		Logger:        b.config().Logger,
	})
	must(t, err, "river client")
	completed, cancel := client.SubscribeConfig(&river.SubscribeConfig{ChanSize: events, Kinds: []river.EventKind{river.EventKindJobCompleted}})
	must(t, client.Start(ctx), "river start")
	return client, completed, func() { _ = client.Stop(ctx); cancel() }
}

// noopParams are n no-op jobs, args first … first+n-1.
func noopParams(first, n int) []river.InsertManyParams {
	params := make([]river.InsertManyParams, n)
	for i := range params {
		params[i] = river.InsertManyParams{Args: measureNoopArgs{I: first + i}}
	}
	return params
}

// runNoopJobs inserts the jobs, 1,000 per InsertMany, and waits for as many
// completion events.
func runNoopJobs(t *testing.T, client *river.Client[pgx.Tx], completed <-chan *river.Event, params []river.InsertManyParams) {
	t.Helper()
	ctx := context.Background()
	n := len(params)
	for off := 0; off < n; off += 1000 {
		_, err := client.InsertMany(ctx, params[off:min(n, off+1000)])
		must(t, err, "InsertMany")
	}
	timeout := time.After(time.Minute)
	for done := 0; done < n; done++ {
		select {
		case <-completed:
		case <-timeout:
			t.Fatalf("river: %d of %d no-op jobs completed after a minute", done, n)
		}
	}
}

// riverNoopRate is River's rate on n no-op jobs in b's schema: from the first
// insert until the last completion event.
func riverNoopRate(t *testing.T, b *testBundle, n int) float64 {
	t.Helper()
	client, completed, stop := startNoopRiver(t, b, n+1000)
	defer stop()
	params := noopParams(0, n)
	start := time.Now()
	runNoopJobs(t, client, completed, params)
	return float64(n) / time.Since(start).Seconds()
}

// TestMeasureLatency measures, at half the rate the triggerer reaches, the time
// from a tracker answering "completed" to that job's finish being durable
// (committed, the worker about to be released).
func TestMeasureLatency(t *testing.T) {
	n := measureSize(t)
	ctx := context.Background()

	// The rate to halve.
	b0 := setup(t)
	ids0 := b0.deferredFixture(t, n)
	tr0 := b0.start(t, b0.measureConfig(completeAtOnce()))
	start := time.Now()
	for off := 0; off < n; off += 1000 {
		must(t, pgx.BeginFunc(ctx, b0.pool, func(tx pgx.Tx) error {
			return tr0.EnqueueTx(ctx, tx, ids0[off:min(n, off+1000)]...)
		}), "EnqueueTx")
	}
	b0.waitDeferredDone(t, time.Minute)
	maxRate := float64(n) / time.Since(start).Seconds()
	rate := maxRate / 2

	b := setup(t)
	ids := b.deferredFixture(t, n)
	answered := make([]atomic.Int64, n) // unix nanos, by position in ids
	durable := make([]atomic.Int64, n)
	pos := make(map[int64]int, n)
	for i, id := range ids {
		pos[id] = i
	}
	byJobID := make(map[string]int, n)
	rows, err := b.pool.Query(ctx, "select id, job_id from "+b.schema+".deferred_jobs")
	must(t, err, "job ids")
	for rows.Next() {
		var id int64
		var jobID string
		must(t, rows.Scan(&id, &jobID), "scan")
		byJobID[jobID] = pos[id]
	}
	tracker := TrackerFunc{Type: fakeServiceType, Func: func(_ context.Context, jobID string, _ json.RawMessage) (orkstate.PollResult, string, error) {
		answered[byJobID[jobID]].Store(time.Now().UnixNano())
		return orkstate.PollCompleted, "", nil
	}}
	tr, err := New(b.measureConfig(tracker))
	must(t, err, "New")
	tr.groups.onDurable = func(id int64) { durable[pos[id]].Store(time.Now().UnixNano()) }
	must(t, tr.Start(ctx), "Start")
	t.Cleanup(func() { _ = tr.Stop(ctx); tr.Close() })

	const tick = 10 * time.Millisecond
	perTick := max(1, int(rate*tick.Seconds()))
	ticker := time.NewTicker(tick)
	for off := 0; off < n; off += perTick {
		<-ticker.C
		must(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			return tr.EnqueueTx(ctx, tx, ids[off:min(n, off+perTick)]...)
		}), "EnqueueTx")
	}
	ticker.Stop()
	b.waitDeferredDone(t, time.Minute)

	lat := make([]time.Duration, 0, n)
	for i := range n {
		if a, d := answered[i].Load(), durable[i].Load(); a > 0 && d > 0 {
			lat = append(lat, time.Duration(d-a))
		}
	}
	slices.Sort(lat)
	if len(lat) < n {
		t.Fatalf("%d of %d jobs have both times", len(lat), n)
	}
	t.Logf("MEASURE n=%d: max %.0f jobs/s; at %.0f jobs/s, tracker answer → durable: p50 %s, p99 %s, max %s",
		n, maxRate, rate, lat[n/2], lat[n*99/100], lat[n-1])
}

// TestMeasureRounds: the triggerer and River's no-op jobs, alternating, each on
// a new install and a new pool: n jobs (connections new), then n more on the same
// client (connections warm); per round the rate, the server CPU per job (the
// pool's backends) and the Go process's CPU per job (getrusage: the test's own
// enqueueing and polling included). ORKSTATE_TRIGGERER_MEASURE_REPS repetitions
// (default 1); ORKSTATE_TRIGGERER_MEASURE_PLANS=1 logs, per statement, the generic
// and custom plans of the triggerer's idle connections (pg_prepared_statements)
// after its rounds. (The variants docs/architecture.md compares with — plan_cache_mode
// auto, no connection cache, the whole deferred job read — were switches in the
// package while they were measured, and were removed with them.)
//
//	ORKSTATE_TRIGGERER_MEASURE=5000 ORKSTATE_TRIGGERER_MEASURE_REPS=3 go test -run TestMeasureRounds -v ./triggerer/
func TestMeasureRounds(t *testing.T) {
	n := measureSize(t)
	reps, _ := strconv.Atoi(os.Getenv("ORKSTATE_TRIGGERER_MEASURE_REPS"))
	variants := []string{"river", "triggerer"}
	res := map[string][]string{}
	for rep := range max(1, reps) {
		for _, v := range variants {
			var rounds []string
			switch v {
			case "river":
				rounds = riverRounds(t, n)
			case "triggerer":
				rounds = triggererRounds(t, n)
			}
			for i, r := range rounds {
				res[v] = append(res[v], fmt.Sprintf("rep %d %s: %s", rep, []string{"new", "warm"}[i], r))
			}
		}
	}
	for _, v := range variants {
		t.Logf("MEASURE n=%d %s:\n\t%s", n, v, strings.Join(res[v], "\n\t"))
	}
}

// cpuMeter reads the server CPU of a pool's backends (application_name app) and
// the Go process's CPU.
type cpuMeter struct {
	t          *testing.T
	pool       *pgxpool.Pool
	app        string
	server, gp float64
	start      time.Time
}

func goCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e3
}

func (m *cpuMeter) begin() {
	m.server, m.gp, m.start = serverCPU(m.t, m.pool, m.app), goCPU(), time.Now()
}

func (m *cpuMeter) end(n int) string {
	secs := time.Since(m.start).Seconds()
	server, gp := serverCPU(m.t, m.pool, m.app)-m.server, goCPU()-m.gp
	return fmt.Sprintf("%.0f jobs/s, server %.0f µs/job, Go %.0f µs/job", float64(n)/secs, server/float64(n), gp/float64(n))
}

// triggererRounds runs the triggerer's two rounds of TestMeasureRounds.
func triggererRounds(t *testing.T, n int) []string {
	ctx := context.Background()
	b := setup(t)
	ids := b.deferredFixture(t, 2*n)
	cfg := b.measureConfig(completeAtOnce())
	app := "mr_" + b.schema
	cfg.Pool = appPool(t, b.pool, app)
	tr, err := New(cfg)
	must(t, err, "New")
	var pidMu sync.Mutex
	pids := map[uint32]bool{}
	tr.groups.onFinishBackend = func(pid uint32) {
		pidMu.Lock()
		pids[pid] = true
		pidMu.Unlock()
	}
	must(t, tr.Start(ctx), "Start")
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = tr.Stop(sctx)
		tr.Close()
	}()
	m := &cpuMeter{t: t, pool: b.pool, app: app}
	var out []string
	for round, part := range [][]int64{ids[:n], ids[n:]} {
		m.begin()
		for off := 0; off < len(part); off += 1000 {
			must(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
				return tr.EnqueueTx(ctx, tx, part[off:min(len(part), off+1000)]...)
			}), "EnqueueTx")
		}
		for open := -1; open != n*(1-round); time.Sleep(2 * time.Millisecond) {
			must(t, b.pool.QueryRow(ctx, "select count(*) from "+b.schema+".deferred_jobs where status in ('pending', 'polling')").Scan(&open), "count open")
			if time.Since(m.start) > time.Minute {
				t.Fatalf("round %d: %d deferred jobs open after a minute", round, open)
			}
		}
		pidMu.Lock()
		out = append(out, m.end(n)+fmt.Sprintf(", group statements on %d backends so far", len(pids)))
		pidMu.Unlock()
	}
	if os.Getenv("ORKSTATE_TRIGGERER_MEASURE_PLANS") != "" {
		plans := map[string][2]int64{}
		for _, c := range tr.pool.AcquireAllIdle(ctx) {
			rows, err := c.Query(ctx, `select left(regexp_replace(statement, '\s+', ' ', 'g'), 60), generic_plans, custom_plans
				from pg_prepared_statements`)
			must(t, err, "pg_prepared_statements")
			for rows.Next() {
				var st string
				var g, cu int64
				must(t, rows.Scan(&st, &g, &cu), "scan")
				p := plans[st]
				plans[st] = [2]int64{p[0] + g, p[1] + cu}
			}
			c.Release()
		}
		for st, p := range plans {
			t.Logf("PLANS (%s) generic %d, custom %d: %s", pinnedPlanCacheMode, p[0], p[1], st)
		}
	}
	return out
}

// riverRounds runs River's two rounds of TestMeasureRounds: no-op jobs, as many
// workers as the triggerer's.
func riverRounds(t *testing.T, n int) []string {
	b := setup(t)
	app := "mr_" + b.schema
	b.pool = appPool(t, b.pool, app)
	client, completed, stop := startNoopRiver(t, b, 2*n+1000)
	defer stop()
	m := &cpuMeter{t: t, pool: b.pool, app: app}
	var out []string
	for round := range 2 {
		params := noopParams(round*n, n)
		m.begin()
		runNoopJobs(t, client, completed, params)
		out = append(out, m.end(n))
	}
	return out
}

// TestMeasureFirstFinish: the server CPU of the group statement finishing one
// deferred job on a new backend, its first call against the next ones: a new
// connection pays for the catalog caches, the functions' compilation and their
// statements' plans once.
func TestMeasureFirstFinish(t *testing.T) {
	measureSize(t)
	ctx := context.Background()
	b := setup(t)
	ids := b.deferredFixture(t, 24)
	rows, err := b.pool.Query(ctx, fmt.Sprintf(`insert into %[1]s.river_job (args, kind, max_attempts, queue, state, attempt, attempted_at)
		select jsonb_build_object('deferred_job_id', id), $1, 10, $2, 'running', 1, now()
		from %[1]s.deferred_jobs order by id returning id`, b.schema), PollDeferredJobKind, DefaultQueue)
	must(t, err, "river jobs")
	riverIDs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	must(t, err, "river jobs")
	tr, err := New(b.measureConfig(completeAtOnce()))
	must(t, err, "New")
	defer tr.Close()
	k := 0
	for c := range 3 {
		conn, err := pgx.ConnectConfig(ctx, tr.pool.Config().ConnConfig)
		must(t, err, "connect")
		var pid int
		must(t, conn.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid), "pid")
		cpu := func() int64 {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
			if err != nil {
				t.Skipf("schedstat: %v", err)
			}
			v, _ := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
			return v
		}
		var out []string
		for range 8 {
			c0 := cpu()
			_, err := conn.Exec(ctx, tr.finishStatement(), []int64{ids[k]}, []string{"completed"}, []string{""}, []int64{riverIDs[k]})
			must(t, err, "finish")
			out = append(out, fmt.Sprintf("%.0f", float64(cpu()-c0)/1e3))
			k++
		}
		t.Logf("MEASURE new connection %d, server CPU of each finish (one job), µs: %s", c, strings.Join(out, " "))
		must(t, conn.Close(ctx), "close")
	}
}

// TestMeasurePollRead compares the poll's read (readPollTargets: the six columns
// a poll needs) with Store.GetDeferredJobs (all fifteen, scanned by name): groups
// of 500 of n deferred jobs, the two alternating, server CPU of the backend and
// Go CPU per job.
func TestMeasurePollRead(t *testing.T) {
	n := measureSize(t)
	ctx := context.Background()
	b := setup(t)
	ids := b.deferredFixture(t, n)
	app := "mr_" + b.schema
	cfg := b.config()
	cfg.Pool = appPool(t, b.pool, app)
	tr, err := New(cfg)
	must(t, err, "New")
	defer tr.Close()
	conn, err := tr.pool.Acquire(ctx) // one backend: the measured one
	must(t, err, "acquire")
	defer conn.Release()
	var server, gp [2][]float64
	for rep := range 20 {
		for v := range 2 {
			s0, g0 := serverCPU(t, b.pool, app), goCPU()
			for off := 0; off < n; off += 500 {
				part := ids[off:min(n, off+500)]
				var jobs []orkstate.DeferredJob
				if v == 0 {
					jobs, err = tr.groups.readPollTargets(ctx, part)
				} else {
					jobs, err = tr.work.GetDeferredJobs(ctx, part)
				}
				must(t, err, "read")
				if len(jobs) != len(part) {
					t.Fatalf("%d jobs for %d ids", len(jobs), len(part))
				}
			}
			if rep > 0 { // the first is warm-up
				server[v] = append(server[v], (serverCPU(t, b.pool, app)-s0)/float64(n))
				gp[v] = append(gp[v], (goCPU()-g0)/float64(n))
			}
		}
	}
	for v, name := range []string{"readPollTargets", "GetDeferredJobs"} {
		slices.Sort(server[v])
		slices.Sort(gp[v])
		q := func(xs []float64) string {
			return fmt.Sprintf("%.1f–%.1f (median %.1f)", xs[len(xs)/4], xs[3*len(xs)/4], xs[len(xs)/2])
		}
		t.Logf("MEASURE %s, n=%d: server µs/job %s, Go µs/job %s", name, n, q(server[v]), q(gp[v]))
	}
}
