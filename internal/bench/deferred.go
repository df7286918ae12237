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

// runDeferred: deferred jobs that complete on their first poll, polled through the
// SQL claim (claim_deferred_jobs + report_deferred_polls, Pollers loops) and through
// orkstate's own triggerer on River (one River job per deferred job), the same
// number of jobs each.
func runDeferred(ctx context.Context, r *runner) error {
	sz := r.sizes
	const sc = "deferred"
	n := sz.DeferredJobs
	r.measure(Result{Scenario: sc, Variant: "completed on first poll", System: SystemOrkstate, Unit: "jobs",
		LatencyOf: "start → job finished", Note: fmt.Sprintf("SQL claim, %d pollers, batches of 1000", sz.Pollers)},
		func(int) (*sample, error) {
			s, drop, err := r.install(ctx)
			if err != nil {
				return nil, err
			}
			defer drop()
			if _, err := deferredFixture(ctx, r, s, n); err != nil {
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
		})

	r.measure(Result{Scenario: sc, Variant: "completed on first poll", System: SystemTriggerer, Unit: "jobs",
		LatencyOf: "start → job finished", Note: "one River job per deferred job"},
		func(int) (*sample, error) {
			s, drop, err := r.install(ctx)
			if err != nil {
				return nil, err
			}
			defer drop()
			if err := triggerer.MigrateRiver(ctx, r.pool, s.Schema()); err != nil {
				return nil, err
			}
			ids, err := deferredFixture(ctx, r, s, n)
			if err != nil {
				return nil, err
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
				return nil, err
			}
			if err := tr.Start(ctx); err != nil {
				return nil, err
			}
			defer func() {
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				defer cancel()
				_ = tr.Stop(sctx)
				tr.Close() // the triggerer's own pool
			}()
			start := time.Now()
			m := r.startMeter(ctx)
			for off := 0; off < len(ids); off += 1000 {
				err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
					return tr.EnqueueTx(ctx, tx, ids[off:min(len(ids), off+1000)]...)
				})
				if err != nil {
					return nil, err
				}
			}
			f := fixture{pool: r.pool, schema: s.Schema()}
			deadline := time.Now().Add(5 * time.Minute)
			for {
				var open int
				if err := r.pool.QueryRow(ctx, f.sql(`select count(*) from {ork}.deferred_jobs where status in ('pending', 'polling')`)).Scan(&open); err != nil {
					return nil, err
				}
				if open == 0 {
					break
				}
				if time.Now().After(deadline) {
					return nil, fmt.Errorf("%d of %d deferred jobs still open after 5 minutes", open, n)
				}
				time.Sleep(10 * time.Millisecond)
			}
			smp := &sample{items: n}
			m.stop(smp)
			lostTasks := 0
			smp.lost, lostTasks, smp.lat, err = deferredDone(ctx, r, s.Schema(), start)
			if lostTasks > 0 {
				smp.note = fmt.Sprintf("%d tasks not succeeded", lostTasks)
			}
			return smp, err
		})
	return nil
}
