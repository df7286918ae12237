package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"golang.org/x/sync/errgroup"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/pgstore"
	"github.com/orkstate/orkstate/triggerer"
)

// deferredFixture gives n running tasks one pending deferred job each (service
// type "bench") and returns the jobs' ids.
func deferredFixture(ctx context.Context, r *runner, s *pgstore.Store, n int) ([]int64, error) {
	f := fixture{pool: r.pool, schema: s.Schema()}
	perRun := min(1000, n)
	if _, err := f.chains(ctx, max(1, n/perRun), perRun, 1, "running", 0); err != nil {
		return nil, err
	}
	rows, err := r.pool.Query(ctx, f.sql(`insert into {ork}.deferred_jobs (task_id, service_type, job_id)
		select id, 'bench', 'job-' || id from {ork}.tasks order by id returning id`))
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	_, err = r.pool.Exec(ctx, f.sql(`vacuum analyze {ork}.deferred_jobs`))
	return ids, err
}

// deferredDone counts deferred jobs not completed and tasks not succeeded, and the
// p50/p99 of the time from start until each job finished.
func deferredDone(ctx context.Context, r *runner, schema string, start time.Time) (lostJobs, lostTasks int, p50, p99 float64, err error) {
	f := fixture{pool: r.pool, schema: schema}
	err = r.pool.QueryRow(ctx, f.sql(`
		select (select count(*) from {ork}.deferred_jobs where status <> 'completed'),
		       (select count(*) from {ork}.tasks where status <> 'success'),
		       coalesce((select percentile_cont(0.5) within group (order by extract(epoch from finished_at - $1))
		                 from {ork}.deferred_jobs), 0) * 1000,
		       coalesce((select percentile_cont(0.99) within group (order by extract(epoch from finished_at - $1))
		                 from {ork}.deferred_jobs), 0) * 1000`), start).Scan(&lostJobs, &lostTasks, &p50, &p99)
	return
}

// runDeferred: deferred jobs that complete on their first poll, polled through the
// SQL claim (claim_deferred_jobs + report_deferred_polls, Pollers loops) and through
// the triggerer's River jobs.
func runDeferred(ctx context.Context, r *runner) error {
	sz := r.sizes
	const sc = "deferred"
	r.try(sc, "completed on first poll", SystemOrkstate, func() error {
		s, drop, err := r.install(ctx)
		if err != nil {
			return err
		}
		defer drop()
		n := sz.DeferredJobs
		if _, err := deferredFixture(ctx, r, s, n); err != nil {
			return err
		}
		lats := make([][]time.Duration, sz.Pollers)
		polled := make([][]int64, sz.Pollers)
		g, gctx := errgroup.WithContext(ctx)
		start := time.Now()
		for p := 0; p < sz.Pollers; p++ {
			g.Go(func() error {
				name := fmt.Sprintf("poller-%d", p)
				for {
					t := time.Now()
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
					lats[p] = append(lats[p], time.Since(t))
				}
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		secs := time.Since(start).Seconds()
		dups, _ := dupsAndLosses(n, polled)
		lostJobs, lostTasks, p50, p99, err := deferredDone(ctx, r, s.Schema(), start)
		if err != nil {
			return err
		}
		var all []time.Duration
		for _, l := range lats {
			all = append(all, l...)
		}
		r50, r99 := percentiles(all)
		res := Result{Scenario: sc, Variant: "completed on first poll", System: SystemOrkstate, Items: n, Unit: "jobs",
			Seconds: secs, P50Ms: p50, P99Ms: p99, LatencyOf: "start → job finished",
			Duplicates: dups, Losses: lostJobs, Note: fmt.Sprintf("SQL claim, %d pollers; claim+report of 1000: p50 %s p99 %s", sz.Pollers, fmtMs(r50), fmtMs(r99))}
		if lostTasks > 0 {
			res.Note += fmt.Sprintf("; %d tasks not succeeded", lostTasks)
		}
		r.add(res)
		return nil
	})

	// The triggerer: one River job per deferred job, polled by a River client.
	r.try(sc, "completed on first poll", SystemRiver, func() error {
		s, drop, err := r.install(ctx)
		if err != nil {
			return err
		}
		defer drop()
		if err := triggerer.MigrateRiver(ctx, r.pool, s.Schema()); err != nil {
			return err
		}
		n := sz.DeferredRiverJobs
		ids, err := deferredFixture(ctx, r, s, n)
		if err != nil {
			return err
		}
		tr, err := triggerer.New(&triggerer.Config{
			Pool:       r.pool,
			Schema:     s.Schema(),
			MaxWorkers: sz.RiverWorkers,
			Logger:     discardLogger(),
			River:      &river.Config{FetchCooldown: riverFetchCooldown},
			Trackers: []triggerer.Tracker{triggerer.TrackerFunc{Type: "bench",
				Func: func(context.Context, string, json.RawMessage) (orkstate.PollResult, string, error) {
					return orkstate.PollCompleted, "", nil
				}}},
		})
		if err != nil {
			return err
		}
		if err := tr.Start(ctx); err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = tr.Stop(sctx)
		}()
		start := time.Now()
		for off := 0; off < len(ids); off += 1000 {
			err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
				return tr.EnqueueTx(ctx, tx, ids[off:min(len(ids), off+1000)]...)
			})
			if err != nil {
				return err
			}
		}
		f := fixture{pool: r.pool, schema: s.Schema()}
		deadline := time.Now().Add(5 * time.Minute)
		for {
			var open int
			if err := r.pool.QueryRow(ctx, f.sql(`select count(*) from {ork}.deferred_jobs where status in ('pending', 'polling')`)).Scan(&open); err != nil {
				return err
			}
			if open == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d of %d deferred jobs still open after 5 minutes", open, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		secs := time.Since(start).Seconds()
		lostJobs, lostTasks, p50, p99, err := deferredDone(ctx, r, s.Schema(), start)
		if err != nil {
			return err
		}
		res := Result{Scenario: sc, Variant: "completed on first poll", System: SystemRiver, Items: n, Unit: "jobs",
			Seconds: secs, P50Ms: p50, P99Ms: p99, LatencyOf: "start → job finished",
			Losses: lostJobs, Note: "triggerer on River"}
		if lostTasks > 0 {
			res.Note += fmt.Sprintf("; %d tasks not succeeded", lostTasks)
		}
		r.add(res)
		return nil
	})
	return nil
}
