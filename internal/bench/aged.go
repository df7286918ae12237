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
// on failure), against a fresh install under the same settings. The two installs'
// repetitions alternate (fresh first in even ones, aged first in odd ones), so the
// load of a shared machine falls on both alike. The purge runs during each aged
// repetition's clocked part, capped at purgeBesideRate (PurgeParams.MaxRate), as
// docs/operations.md advises beside busy workers; each result's note says how much
// it purged, at what rate, and whether history was left at the end of every
// repetition. Full mode only (AgedTasks > 0): it changes a server setting for its
// duration.
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
	var inst [2]struct {
		s *pgstore.Store
		f fixture
	}
	for i, aged := range []bool{false, true} {
		s, drop, err := r.install(ctx)
		if err != nil {
			return err
		}
		defer drop()
		inst[i].s, inst[i].f = s, fixture{pool: r.pool, schema: s.Schema(), aged: aged}
	}
	t0 := time.Now()
	if err := agedHistory(ctx, inst[1].f, sz.AgedTasks); err != nil {
		return err
	}
	r.logf("    history: %d finished tasks in %.1fs", sz.AgedTasks, time.Since(t0).Seconds())
	pg := &purgeBeside{s: inst[1].s, ages: float64(sz.AgedTasks) / 60 / 86400}

	n := sz.ClaimTasks
	perRun := min(1000, n)
	r.measurePair(
		Result{Scenario: sc, Variant: "fresh claims, 4 claimers", System: SystemOrkstate, Unit: "tasks",
			LatencyOf: fmt.Sprintf("claim_tasks call of %d", sz.ClaimBatch), Note: agedNote(false, sz.AgedTasks)},
		Result{Scenario: sc, Variant: "aged claims, 4 claimers", System: SystemOrkstate, Unit: "tasks",
			LatencyOf: fmt.Sprintf("claim_tasks call of %d", sz.ClaimBatch), Note: agedNote(true, sz.AgedTasks)},
		func(i int) (*sample, error) {
			f, s := inst[i].f, inst[i].s
			if _, err := f.chains(ctx, max(1, n/perRun), perRun, 1, "pending", 0); err != nil {
				return nil, err
			}
			m := r.startMeter(ctx)
			pg.start(ctx, i == 1)
			ids, lat, err := claimAll(ctx, s, 4, sz.ClaimBatch)
			smp := &sample{items: n, lat: lat}
			m.stop(smp) // before the purge's stop, which waits for its batch in progress to be cancelled
			if perr := pg.stop(); err == nil {
				err = perr
			}
			smp.dups, smp.lost = dupsAndLosses(n, ids)
			return smp, err
		}, pg)
	shape := chainsShape()
	r.measurePair(
		Result{Scenario: sc, Variant: "fresh e2e chains", System: SystemOrkstate, Unit: "tasks",
			LatencyOf: "run created → finished", Note: agedNote(false, sz.AgedTasks)},
		Result{Scenario: sc, Variant: "aged e2e chains", System: SystemOrkstate, Unit: "tasks",
			LatencyOf: "run created → finished", Note: agedNote(true, sz.AgedTasks)},
		func(i int) (*sample, error) {
			pg.start(ctx, i == 1)
			smp, _, err := r.orkstateE2EOn(ctx, inst[i].s, shape, sz.E2ERuns, failurePlan{}, false)
			if perr := pg.stop(); err == nil {
				err = perr
			}
			return smp, err
		}, pg)
	return nil
}

// measurePair measures two variants Reps times each, alternating which goes first,
// and records fresh's result, then aged's (once(0) measures fresh, once(1) aged);
// pg's note is added to aged's.
func (r *runner) measurePair(fresh, aged Result, once func(i int) (*sample, error), pg *purgeBeside) {
	reps := max(1, r.sizes.Reps)
	base := [2]Result{fresh, aged}
	var ss [2][]*sample
	var failed [2]error
	for rep := 0; rep < reps; rep++ {
		for k := 0; k < 2; k++ {
			i := (k + rep) % 2
			if failed[i] != nil {
				continue
			}
			s, err := once(i)
			if err != nil {
				failed[i] = err
				continue
			}
			ss[i] = append(ss[i], s)
		}
	}
	for i := range base {
		if failed[i] != nil {
			base[i].Error = failed[i].Error()
			r.add(base[i])
			continue
		}
		res := aggregate(base[i], ss[i])
		if i == 1 {
			res.Note += pg.note()
		}
		r.add(res)
	}
}

func agedNote(aged bool, n int) string {
	if !aged {
		return "fresh install, autovacuum on"
	}
	return fmt.Sprintf("%s finished tasks of history over 60 days, not vacuumed, the part older than 30 days purged meanwhile; autovacuum on", humanCount(n))
}

// purgeBesideAge is the retention period of the purge beside the aged measurements.
const purgeBesideAge = 30 * 24 * time.Hour

// purgeBesideRate caps the purge beside the aged measurements, in tasks per second
// (PurgeParams.MaxRate): 86M tasks a day, far above the rate the scenario's history
// ages (AgedTasks over 60 days: 0.19 tasks/s at 1M) and the "millions of tasks a
// day" of a busy install (12–35 tasks/s), so a purge at this pace keeps up with
// either however long it runs. docs/architecture.md, "Retention", has what it costs.
const purgeBesideRate = 1000

// purgeBeside is a purge running beside the aged install's measurements: PurgeRuns
// of everything older than purgeBesideAge, capped at purgeBesideRate, started before
// each aged repetition's clocked part and stopped after it.
type purgeBeside struct {
	s    *pgstore.Store
	ages float64 // tasks per second the scenario's history ages at
	// of the purge in progress
	tasks  atomic.Int64
	t0     time.Time
	cancel context.CancelFunc
	done   chan error
	// over the measurement so far: tasks purged, seconds purging, repetitions, and
	// whether history was left at the end of every one
	purged     int64
	secs       float64
	reps       int
	throughout bool
}

// start starts a purge when on is true (an aged repetition).
func (p *purgeBeside) start(ctx context.Context, on bool) {
	if !on {
		return
	}
	if p.reps == 0 {
		p.throughout = true
	}
	ctx, p.cancel = context.WithCancel(ctx)
	p.done = make(chan error, 1)
	p.tasks.Store(0)
	p.t0 = time.Now()
	go func() {
		_, err := p.s.PurgeRuns(ctx, pgstore.PurgeParams{OlderThan: purgeBesideAge, MaxRate: purgeBesideRate,
			Progress: func(r pgstore.PurgeResult) { p.tasks.Store(r.Tasks) }})
		p.done <- err
	}()
}

// stop ends the purge in progress, if any, and returns its error.
func (p *purgeBeside) stop() error {
	if p.cancel == nil {
		return nil
	}
	var err error
	select {
	case err = <-p.done:
		// it had finished by itself: no history left, or an error
		p.throughout = false
	default:
		p.cancel()
		err = <-p.done
		if errors.Is(err, context.Canceled) {
			err = nil
		}
	}
	p.cancel()
	p.cancel = nil
	p.secs += time.Since(p.t0).Seconds()
	p.purged += p.tasks.Load()
	p.reps++
	if err != nil {
		return fmt.Errorf("purge beside the aged measurements: %w", err)
	}
	return nil
}

// note says what the purge did during the measurement recorded last, and resets.
func (p *purgeBeside) note() string {
	rate := 0.0
	if p.secs > 0 {
		rate = float64(p.purged) / p.secs
	}
	s := fmt.Sprintf("; beside it the purge (capped at %d tasks/s) deleted %d tasks in the %d repetitions' %.1f s: %.0f tasks/s, "+
		"%.0f× the %.2f tasks/s this history ages at; history left at the end of %s",
		purgeBesideRate, p.purged, p.reps, p.secs, rate, rate/max(p.ages, 1e-9), p.ages,
		map[bool]string{true: "every one", false: "not every one"}[p.throughout])
	p.purged, p.secs, p.reps, p.throughout = 0, 0, 0, false
	return s
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
