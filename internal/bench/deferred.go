package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"golang.org/x/sync/errgroup"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/pgstore"
	"github.com/orkstate/orkstate/triggerer"
)

// deferredFixture gives n running tasks one pending deferred job each (service
// type "bench", job id "job-<task id>") and returns the jobs' ids and job ids.
func deferredFixture(ctx context.Context, r *runner, s *pgstore.Store, n int) (ids []int64, jobIDs []string, err error) {
	f := fixture{pool: r.pool, schema: s.Schema()}
	perRun := min(1000, n)
	if _, err := f.chains(ctx, max(1, n/perRun), perRun, 1, "running", 0); err != nil {
		return nil, nil, err
	}
	rows, err := r.pool.Query(ctx, f.sql(`insert into {ork}.deferred_jobs (task_id, service_type, job_id)
		select id, 'bench', 'job-' || id from {ork}.tasks order by id returning id, job_id`))
	if err != nil {
		return nil, nil, err
	}
	var id int64
	var jobID string
	if _, err := pgx.ForEachRow(rows, []any{&id, &jobID}, func() error {
		ids = append(ids, id)
		jobIDs = append(jobIDs, jobID)
		return nil
	}); err != nil {
		return nil, nil, err
	}
	_, err = r.pool.Exec(ctx, f.sql(`vacuum analyze {ork}.deferred_jobs`))
	return ids, jobIDs, err
}

// deferredDone counts deferred jobs not completed and tasks not succeeded, and
// returns each job's time from start until it finished.
func deferredDone(ctx context.Context, r *runner, schema string, start time.Time) (lostJobs, lostTasks int, lat []time.Duration, err error) {
	f := fixture{pool: r.pool, schema: schema}
	if err = r.pool.QueryRow(ctx, f.sql(`
		select (select count(*) from {ork}.deferred_jobs where status <> 'completed'),
		       (select count(*) from {ork}.tasks where status <> 'success')`)).Scan(&lostJobs, &lostTasks); err != nil {
		return
	}
	rows, err := r.pool.Query(ctx, f.sql(`select (extract(epoch from finished_at - $1) * 1e6)::bigint from {ork}.deferred_jobs where finished_at is not null`), start)
	if err != nil {
		return
	}
	us, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	for _, u := range us {
		lat = append(lat, time.Duration(u)*time.Microsecond)
	}
	return
}

const deferredVariant = "completed on first poll"

// runDeferred: deferred jobs that complete on their first poll, polled through the
// SQL claim (claim_deferred_jobs + report_deferred_polls, Pollers loops) and through
// orkstate's own triggerer on River (one River job per deferred job), the same
// number of jobs each; River's own no-op jobs of that count, its repetitions
// alternating with the triggerer's so that both see the same machine; then the
// triggerer with jobs arriving at half the rate it reached, for the latency from
// the tracker's answer to the task's success.
func runDeferred(ctx context.Context, r *runner) error {
	sz := r.sizes
	const sc = "deferred"
	n := sz.DeferredJobs
	r.measure(Result{Scenario: sc, Variant: deferredVariant, System: SystemOrkstate, Unit: "jobs",
		LatencyOf: "start → job finished", Note: fmt.Sprintf("SQL claim, %d pollers, batches of 1000", sz.Pollers)},
		func(int) (*sample, error) { return deferredSQLClaim(ctx, r, n) })

	trigBase := Result{Scenario: sc, Variant: deferredVariant, System: SystemTriggerer, Unit: "jobs",
		LatencyOf: "start → job finished", Note: fmt.Sprintf("one River job per deferred job, %d workers", sz.RiverWorkers)}
	riverBase := Result{Scenario: sc, Variant: deferredVariant, System: SystemRiver, Unit: "jobs",
		LatencyOf: "job insert → completed", Note: fmt.Sprintf("no-op jobs, as many as the triggerer's, %d workers; repetitions alternate with the triggerer's", sz.RiverWorkers)}
	var trigSamples, riverSamples []*sample
	var trigErr, riverErr error
	for i := 0; i < max(1, sz.Reps); i++ {
		if riverErr == nil {
			s, err := runRiverNoop(ctx, r, n)
			riverSamples, riverErr = append(riverSamples, s), err
		}
		if trigErr == nil {
			s, _, err := deferredTriggerer(ctx, r, n, 0)
			trigSamples, trigErr = append(trigSamples, s), err
		}
	}
	for _, m := range []struct {
		base Result
		ss   []*sample
		err  error
	}{{trigBase, trigSamples, trigErr}, {riverBase, riverSamples, riverErr}} {
		if m.err != nil {
			m.base.Error = m.err.Error()
			r.add(m.base)
			continue
		}
		r.add(aggregate(m.base, m.ss))
	}
	if trigErr != nil {
		return nil
	}

	// Open loop at half the maximum.
	maxRate := find(r.results, sc, deferredVariant, SystemTriggerer, false).Throughput
	rate := maxRate / 2
	jobs := max(2, int(rate*sz.OpenLoopSeconds))
	r.measure(Result{Scenario: sc, Variant: "50% of max", System: SystemTriggerer, Unit: "jobs",
		LatencyOf: "tracker's answer → task's success committed",
		Note:      fmt.Sprintf("%d jobs arriving at %.0f/s (half the closed loop's %.0f/s) for %.0fs", jobs, rate, maxRate, sz.OpenLoopSeconds)},
		func(int) (*sample, error) {
			s, lat, err := deferredTriggerer(ctx, r, jobs, rate)
			if err != nil {
				return nil, err
			}
			s.lat = lat
			s.secs = float64(jobs) / rate // the arrival rate is the row's throughput
			return s, nil
		})
	return nil
}

// deferredSQLClaim completes n deferred jobs through claim_deferred_jobs and
// report_deferred_polls.
func deferredSQLClaim(ctx context.Context, r *runner, n int) (*sample, error) {
	sz := r.sizes
	s, drop, err := r.install(ctx)
	if err != nil {
		return nil, err
	}
	defer drop()
	if _, _, err := deferredFixture(ctx, r, s, n); err != nil {
		return nil, err
	}
	polled := make([][]int64, sz.Pollers)
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	m := r.startMeter(ctx)
	for p := 0; p < sz.Pollers; p++ {
		g.Go(func() error {
			name := fmt.Sprintf("poller-%d", p)
			for {
				jobs, err := s.ClaimDeferredJobs(gctx, orkstate.DeferredClaimParams{Claimer: name, Limit: 1000})
				if err != nil {
					return err
				}
				if len(jobs) == 0 {
					return nil
				}
				reports := make([]orkstate.DeferredPollReport, len(jobs))
				for i, j := range jobs {
					reports[i] = orkstate.DeferredPollReport{JobID: j.ID, Result: orkstate.PollCompleted, Attempt: j.Attempts}
					polled[p] = append(polled[p], j.ID)
				}
				if _, err := s.ReportDeferredPolls(gctx, reports); err != nil {
					return err
				}
			}
		})
	}
	err = g.Wait()
	smp := &sample{items: n}
	m.stop(smp)
	if err != nil {
		return nil, err
	}
	smp.dups, _ = dupsAndLosses(n, polled)
	lostTasks := 0
	smp.lost, lostTasks, smp.lat, err = deferredDone(ctx, r, s.Schema(), start)
	if lostTasks > 0 {
		smp.note = fmt.Sprintf("%d tasks not succeeded", lostTasks)
	}
	return smp, err
}

// finishProbe is a River worker middleware around the triggerer's poll jobs: the
// triggerer's worker returns once its deferred job's finish committed, so the
// probe sees each job end (the clock stops at the last) and the time from the
// tracker's answer to that commit.
type finishProbe struct {
	river.MiddlewareDefaults
	jobIDs   map[int64]string // deferred job id → its job id, which the tracker sees
	answered sync.Map         // job id → time.Time the tracker answered
	n        int64
	finished atomic.Int64
	all      chan struct{}

	mu  sync.Mutex
	lat []time.Duration
}

func (p *finishProbe) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	if err := doInner(ctx); err != nil {
		return err
	}
	end := time.Now()
	var args triggerer.PollDeferredJobArgs
	if err := json.Unmarshal(job.EncodedArgs, &args); err == nil {
		if at, ok := p.answered.LoadAndDelete(p.jobIDs[args.DeferredJobID]); ok {
			p.mu.Lock()
			p.lat = append(p.lat, end.Sub(at.(time.Time)))
			p.mu.Unlock()
		}
	}
	if p.finished.Add(1) == p.n {
		close(p.all)
	}
	return nil
}

// deferredTriggerer completes n deferred jobs through orkstate's triggerer on
// River, its tracker answering "completed" at once. With rate 0 every River job is
// inserted at once (1,000 per transaction, on the clock, as River's no-op jobs are);
// otherwise they arrive at rate per second in small transactions. It returns the
// sample (latency from start to each job's finish) and the latencies from the
// tracker's answer to the commit of the job's finish.
func deferredTriggerer(ctx context.Context, r *runner, n int, rate float64) (*sample, []time.Duration, error) {
	sz := r.sizes
	s, drop, err := r.install(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer drop()
	if err := triggerer.MigrateRiver(ctx, r.pool, s.Schema()); err != nil {
		return nil, nil, err
	}
	ids, jobIDs, err := deferredFixture(ctx, r, s, n)
	if err != nil {
		return nil, nil, err
	}
	probe := &finishProbe{jobIDs: make(map[int64]string, len(ids)), n: int64(len(ids)), all: make(chan struct{})}
	for i, id := range ids {
		probe.jobIDs[id] = jobIDs[i]
	}
	tr, err := triggerer.New(&triggerer.Config{
		Pool:       r.pool,
		Schema:     s.Schema(),
		MaxWorkers: sz.RiverWorkers,
		Logger:     discardLogger(),
		River:      &river.Config{FetchCooldown: riverFetchCooldown, Middleware: []rivertype.Middleware{probe}},
		Trackers: []triggerer.Tracker{triggerer.TrackerFunc{Type: "bench",
			Func: func(_ context.Context, jobID string, _ json.RawMessage) (orkstate.PollResult, string, error) {
				probe.answered.Store(jobID, time.Now())
				return orkstate.PollCompleted, "", nil
			}}},
	})
	if err != nil {
		return nil, nil, err
	}
	if err := tr.Start(ctx); err != nil {
		return nil, nil, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = tr.Stop(sctx)
		tr.Close() // the triggerer's own pool
	}()
	enqueue := func(part []int64) error {
		return pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error { return tr.EnqueueTx(ctx, tx, part...) })
	}
	start := time.Now()
	m := r.startMeter(ctx)
	if rate <= 0 {
		for off := 0; off < len(ids); off += 1000 {
			if err := enqueue(ids[off:min(len(ids), off+1000)]); err != nil {
				return nil, nil, err
			}
		}
	} else {
		// Every 5 ms, the jobs due by then.
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for sent := 0; sent < len(ids); {
			due := min(len(ids), int(time.Since(start).Seconds()*rate)+1)
			if due > sent {
				if err := enqueue(ids[sent:due]); err != nil {
					return nil, nil, err
				}
				sent = due
			}
			<-tick.C
		}
	}
	select {
	case <-probe.all:
	case <-time.After(5 * time.Minute):
		return nil, nil, fmt.Errorf("%d of %d deferred jobs finished after 5 minutes", probe.finished.Load(), n)
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	smp := &sample{items: n}
	m.stop(smp)
	lostTasks := 0
	smp.lost, lostTasks, smp.lat, err = deferredDone(ctx, r, s.Schema(), start)
	if lostTasks > 0 {
		smp.note = fmt.Sprintf("%d tasks not succeeded", lostTasks)
	}
	return smp, probe.lat, err
}

// deferredTargets are issue 18's targets: the triggerer at least half as fast as
// River's no-op jobs of the same count in the same run, and p99 from the tracker's
// answer to the task's success at most 50 ms at half the triggerer's maximum.
func deferredTargets(results []Result) []Target {
	var ts []Target
	trig := find(results, "deferred", deferredVariant, SystemTriggerer, false)
	rv := find(results, "deferred", deferredVariant, SystemRiver, false)
	if trig != nil && rv != nil && trig.Variant == deferredVariant && rv.Variant == deferredVariant && rv.Throughput > 0 {
		v := trig.Throughput / rv.Throughput
		ts = append(ts, Target{Goal: "deferred jobs through the triggerer on River vs River no-op jobs/s, same count, same run",
			Value: round2(v), Want: "≥ 0.5×", Met: v >= 0.5,
			Detail: fmt.Sprintf("%d jobs; %.0f vs %.0f jobs/s; issue 18", trig.Items, trig.Throughput, rv.Throughput)})
	}
	for _, r := range results {
		if r.Scenario == "deferred" && r.System == SystemTriggerer && r.Variant == "50% of max" && r.Error == "" && r.P99Ms > 0 {
			ts = append(ts, Target{Goal: "deferred job: tracker's answer → task's success committed, p99 at 50% of max, ms",
				Value: round2(r.P99Ms), Want: "≤ 50", Met: r.P99Ms <= 50,
				Detail: fmt.Sprintf("p50 %.2f ms; issue 18", r.P50Ms)})
		}
	}
	return ts
}
