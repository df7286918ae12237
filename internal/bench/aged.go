package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/orkstate/orkstate/pgstore"
)

// runAged: claims and end-to-end runs on an install that carries AgedTasks finished
// tasks of history — finished by one UPDATE, so their dead versions are still
// there, not vacuumed, their runs spread over 60 days — while a purger removes the
// half older than 30 days beside the measured claims and e2e (issue 15: "while
// purging runs: claims and e2e ≥ 0.9× a fresh install in the same run"), with
// autovacuum switched on for the scenario (ALTER SYSTEM, restored afterwards, also
// on failure), against a fresh install under the same settings. The purge is
// paced as docs/operations.md advises for a backlog (PurgeParams.Pause 100 ms);
// each result's note says how much it purged during the measurement and whether
// it was still running at its end. Full mode only (AgedTasks > 0): it changes a
// server setting for its duration.
func runAged(ctx context.Context, r *runner) error {
	sz := r.sizes
	if sz.AgedTasks <= 0 {
		r.missing = append(r.missing, "aged install: full mode only (it switches autovacuum on for its duration)")
		return nil
	}
	restore, err := r.autovacuumOn(ctx, "aged")
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
		var pg *purgeBeside
		if aged {
			pg = startPurgeBeside(ctx, s)
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
				mark := pg.mark()
				ids, lat, err := claimAll(ctx, s, 4, sz.ClaimBatch)
				smp := &sample{items: n, lat: lat}
				m.stop(smp)
				pg.during(mark)
				smp.dups, smp.lost = dupsAndLosses(n, ids)
				return smp, err
			})
		pg.note(r)
		r.measure(Result{Scenario: sc, Variant: prefix + "e2e chains", System: SystemOrkstate, Unit: "tasks",
			LatencyOf: "run created → finished", Note: agedNote(aged, sz.AgedTasks)},
			func(int) (*sample, error) {
				mark := pg.mark()
				smp, _, err := r.orkstateE2EOn(ctx, s, shape, sz.E2ERuns, failurePlan{}, false)
				pg.during(mark)
				return smp, err
			})
		pg.note(r)
		if err := pg.stop(); err != nil {
			drop()
			return fmt.Errorf("purge beside the aged measurements: %w", err)
		}
		drop()
	}
	return nil
}

func agedNote(aged bool, n int) string {
	if !aged {
		return "fresh install, autovacuum on"
	}
	return fmt.Sprintf("%s finished tasks of history over 60 days, not vacuumed, half of it purged meanwhile (older than 30 days, paced 100 ms); autovacuum on", humanCount(n))
}

// purgeBesideAge is the retention period of the purge beside the aged measurements.
const purgeBesideAge = 30 * 24 * time.Hour

// purgeBeside is a purge running beside measurements: PurgeRuns of everything older
// than purgeBesideAge, paced, until the history is gone or it is stopped.
type purgeBeside struct {
	tasks   atomic.Int64 // purged so far
	running atomic.Bool
	cancel  context.CancelFunc
	done    chan error
	// of the measurement in progress: tasks purged during it, and whether the purge
	// was still running at its end (every repetition's)
	purged     int64
	throughout bool
	reps       int
}

func startPurgeBeside(ctx context.Context, s *pgstore.Store) *purgeBeside {
	ctx, cancel := context.WithCancel(ctx)
	p := &purgeBeside{cancel: cancel, done: make(chan error, 1), throughout: true}
	p.running.Store(true)
	go func() {
		defer p.running.Store(false)
		_, err := s.PurgeRuns(ctx, pgstore.PurgeParams{OlderThan: purgeBesideAge, Pause: 100 * time.Millisecond,
			Progress: func(r pgstore.PurgeResult) { p.tasks.Store(r.Tasks) }})
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		p.done <- err
	}()
	return p
}

// mark and during bracket one repetition of a measurement (nil: no purge).
func (p *purgeBeside) mark() int64 {
	if p == nil {
		return 0
	}
	return p.tasks.Load()
}

func (p *purgeBeside) during(mark int64) {
	if p == nil {
		return
	}
	p.purged += p.tasks.Load() - mark
	p.throughout = p.throughout && p.running.Load()
	p.reps++
}

// note appends what the purge did during the last measurement to its result.
func (p *purgeBeside) note(r *runner) {
	if p == nil || len(r.results) == 0 {
		return
	}
	res := &r.results[len(r.results)-1]
	res.Note += fmt.Sprintf("; the purge deleted %d tasks during the %d repetitions, running at the end of %s",
		p.purged, p.reps, map[bool]string{true: "every one", false: "not every one"}[p.throughout])
	p.purged, p.throughout, p.reps = 0, true, 0
}

// stop ends the purge and returns its error.
func (p *purgeBeside) stop() error {
	if p == nil {
		return nil
	}
	p.cancel()
	return <-p.done
}

// agedHistory writes n tasks as finished runs' history: inserted pending, then finished
// by one UPDATE (leaving n dead versions for autovacuum), their queue rows deleted and
// their runs' counters and status set as the functions would have, the runs finished
// between 1 hour and 60 days ago.
func agedHistory(ctx context.Context, f fixture, n int) error {
	perRun := 100
	if _, err := f.chains(ctx, max(1, n/(perRun*10)), perRun, 10, "pending", 24*time.Hour); err != nil {
		return err
	}
	for _, q := range []string{
		`update {ork}.tasks set status = 'success', attempts = 1, unmet_deps = 0,
			dispatched_at = created_at, started_at = created_at, finished_at = created_at + interval '1 second'`,
		`delete from {ork}.task_queue`,
		`update {ork}.runs set status = 'success', tasks_finished = tasks_total,
			finished_at = now() - interval '1 hour' - (id % 60) * interval '1 day'`,
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
func (r *runner) autovacuumOn(ctx context.Context, scenario string) (func(), error) {
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
	r.logf("    autovacuum on (was %s) for the %s scenario", prev, scenario)
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
