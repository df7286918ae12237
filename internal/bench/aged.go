package bench

import (
	"context"
	"fmt"
	"time"
)

// runAged: claims and end-to-end runs on an install that carries AgedTasks finished
// tasks of history — finished by one UPDATE, so their dead versions are still
// there, not vacuumed — with autovacuum switched on for the scenario (ALTER SYSTEM,
// restored afterwards), against a fresh install under the same settings. Full mode
// only (AgedTasks > 0): it changes a server setting for its duration.
func runAged(ctx context.Context, r *runner) error {
	sz := r.sizes
	if sz.AgedTasks <= 0 {
		r.missing = append(r.missing, "aged install: full mode only (it switches autovacuum on for its duration)")
		return nil
	}
	restore, err := r.autovacuumOn(ctx)
	if err != nil {
		return err
	}
	defer restore()
	const sc = "aged"
	shape := chainsShape()
	for _, aged := range []bool{false, true} {
		prefix := "fresh "
		if aged {
			prefix = "aged "
		}
		s, drop, err := r.install(ctx)
		if err != nil {
			return err
		}
		f := fixture{pool: r.pool, schema: s.Schema(), aged: aged}
		if aged {
			t0 := time.Now()
			if err := agedHistory(ctx, f, sz.AgedTasks); err != nil {
				drop()
				return err
			}
			r.logf("    history: %d finished tasks in %.1fs", sz.AgedTasks, time.Since(t0).Seconds())
		}
		n := sz.ClaimTasks
		perRun := min(1000, n)
		r.measure(Result{Scenario: sc, Variant: prefix + "claims, 4 claimers", System: SystemOrkstate, Unit: "tasks",
			LatencyOf: fmt.Sprintf("claim_tasks call of %d", sz.ClaimBatch), Note: agedNote(aged, sz.AgedTasks)},
			func(int) (*sample, error) {
				if _, err := f.chains(ctx, max(1, n/perRun), perRun, 1, "pending", 0); err != nil {
					return nil, err
				}
				m := r.startMeter(ctx)
				ids, lat, err := claimAll(ctx, s, 4, sz.ClaimBatch)
				smp := &sample{items: n, lat: lat}
				m.stop(smp)
				smp.dups, smp.lost = dupsAndLosses(n, ids)
				return smp, err
			})
		r.measure(Result{Scenario: sc, Variant: prefix + "e2e chains", System: SystemOrkstate, Unit: "tasks",
			LatencyOf: "run created → finished", Note: agedNote(aged, sz.AgedTasks)},
			func(int) (*sample, error) {
				smp, _, err := r.orkstateE2EOn(ctx, s, shape, sz.E2ERuns, failurePlan{}, false)
				return smp, err
			})
		drop()
	}
	return nil
}

func agedNote(aged bool, n int) string {
	if !aged {
		return "fresh install, autovacuum on"
	}
	return fmt.Sprintf("%s finished tasks of history, not vacuumed; autovacuum on", humanCount(n))
}

// agedHistory writes n tasks as finished runs' history: inserted pending, then finished
// by one UPDATE (leaving n dead versions for autovacuum), their queue rows deleted and
// their runs' counters and status set as the functions would have.
func agedHistory(ctx context.Context, f fixture, n int) error {
	perRun := 100
	if _, err := f.chains(ctx, max(1, n/(perRun*10)), perRun, 10, "pending", 24*time.Hour); err != nil {
		return err
	}
	for _, q := range []string{
		`update {ork}.tasks set status = 'success', attempts = 1, unmet_deps = 0,
			dispatched_at = created_at, started_at = created_at, finished_at = created_at + interval '1 second'`,
		`delete from {ork}.task_queue`,
		`update {ork}.runs set status = 'success', tasks_finished = tasks_total, finished_at = now() - interval '23 hours'`,
		`analyze {ork}.tasks, {ork}.runs, {ork}.task_queue`,
	} {
		if _, err := f.pool.Exec(ctx, f.sql(q)); err != nil {
			return err
		}
	}
	return nil
}

// autovacuumOn switches autovacuum on server-wide (ALTER SYSTEM + reload) and returns
// the function that puts the setting back as it was.
func (r *runner) autovacuumOn(ctx context.Context) (func(), error) {
	var prev string
	var inAutoConf bool
	if err := r.pool.QueryRow(ctx, `select current_setting('autovacuum'),
		exists (select 1 from pg_file_settings where name = 'autovacuum' and sourcefile like '%postgresql.auto.conf')`).Scan(&prev, &inAutoConf); err != nil {
		return nil, err
	}
	reload := func(ctx context.Context, stmt string) error {
		if _, err := r.pool.Exec(ctx, stmt); err != nil {
			return err
		}
		_, err := r.pool.Exec(ctx, "select pg_reload_conf()")
		return err
	}
	if err := reload(ctx, "alter system set autovacuum = on"); err != nil {
		return nil, fmt.Errorf("switching autovacuum on (needs a superuser): %w", err)
	}
	r.logf("    autovacuum on (was %s) for the aged-install scenario", prev)
	return func() {
		ctx := context.WithoutCancel(ctx)
		stmt := "alter system reset autovacuum"
		if inAutoConf {
			stmt = "alter system set autovacuum = " + map[bool]string{true: "on", false: "off"}[prev == "on"]
		}
		if err := reload(ctx, stmt); err != nil {
			r.logf("    could not restore autovacuum (was %s): %v", prev, err)
			return
		}
		r.logf("    autovacuum restored (%s)", prev)
	}, nil
}
