package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/pgstore"
)

// chainLayout splits n tasks into chains so that one batch is one level: batch
// chains, 10 per run, n/batch links each.
func chainLayout(n, batch int) (runs, perRun, links int) {
	perRun = min(10, batch)
	runs = max(1, batch/perRun)
	links = max(1, n/(runs*perRun))
	return runs, perRun, links
}

// runBatchStatus: tasks in chains reported success level by level in batches;
// each success decrements the next link's counter (pending → ready). It runs with
// one reporter, and with two reporters at once (one per core: a single caller keeps
// one backend, so one core, busy), each reporting its own chains. Beside orkstate:
// the same-write floor (plain SQL doing exactly orkstate's writes), the bare UPDATE
// of the status column (not the same work: labelled so), and ork-v1's report path
// (process_status_updates) at its default batch of 100 and at 1,000.
func runBatchStatus(ctx context.Context, r *runner) error {
	sz := r.sizes
	const sc = "batch_status"
	for _, k := range []int{1, 2} {
		runs, perRun, links := chainLayout(sz.BatchTasks, sz.BatchSize*k)
		w := runs * perRun
		n := w * links
		variant := fmt.Sprintf("chains, batch %d", sz.BatchSize)
		if k > 1 {
			variant += fmt.Sprintf(", %d reporters", k)
		}
		latOf := fmt.Sprintf("call of %d", sz.BatchSize)

		// orkstate: set_task_states
		r.measure(Result{Scenario: sc, Variant: variant, System: SystemOrkstate, Unit: "transitions", LatencyOf: "set_task_states " + latOf},
			func(int) (*sample, error) {
				s, first, drop, err := r.installChains(ctx, runs, perRun, links)
				if err != nil {
					return nil, err
				}
				defer drop()
				var notApplied atomic.Int64
				m := r.startMeter(ctx)
				lat, err := reportLevels(ctx, k, links, w, first, func(ctx context.Context, ids []int64) error {
					missed, err := reportSuccesses(ctx, s, ids)
					notApplied.Add(int64(missed))
					return err
				})
				smp := &sample{items: n, lat: lat, dups: int(notApplied.Load())}
				m.stop(smp)
				if err != nil {
					return nil, err
				}
				lost, unfinishedRuns, err := countUnfinished(ctx, r, s.Schema(), "success")
				if err != nil {
					return nil, err
				}
				smp.lost = lost
				if unfinishedRuns > 0 {
					smp.note = fmt.Sprintf("%d runs not finished", unfinishedRuns)
				}
				smp.diskBytes, err = r.diskSize(ctx, s.Schema())
				smp.diskItems = n
				return smp, err
			})

		// The same-write floor: the rows orkstate writes for these successes, written by
		// plain SQL with everything known in advance (no checks, no lookups).
		r.measure(Result{Scenario: sc, Variant: variant, System: SystemFloor, Unit: "transitions", LatencyOf: "the writes of a report of " + fmt.Sprint(sz.BatchSize),
			Note: "plain SQL, the same writes: task rows, dependents' row locks, queue delete + insert, run counters"},
			func(int) (*sample, error) {
				s, first, drop, err := r.installChains(ctx, runs, perRun, links)
				if err != nil {
					return nil, err
				}
				defer drop()
				f := fixture{pool: r.pool, schema: s.Schema()}
				writes, err := floorWrites(ctx, f, k, links, w, first)
				if err != nil {
					return nil, err
				}
				var done atomic.Int64
				m := r.startMeter(ctx)
				lat, err := reportLevels(ctx, k, links, w, first, func(ctx context.Context, ids []int64) error {
					n, err := writes.apply(ctx, ids)
					done.Add(n)
					return err
				})
				smp := &sample{items: n, lat: lat}
				m.stop(smp)
				if err != nil {
					return nil, err
				}
				smp.lost = n - int(done.Load())
				smp.diskBytes, err = r.diskSize(ctx, s.Schema())
				smp.diskItems = n
				return smp, err
			})

		// The bare UPDATE of the status column: a quarter of the writes, not the same work.
		r.measure(Result{Scenario: sc, Variant: variant, System: SystemRaw, Unit: "transitions", LatencyOf: "UPDATE of " + fmt.Sprint(sz.BatchSize),
			Note: "bare UPDATE of the status column only: not the same work (no counters, queue or runs)"},
			func(int) (*sample, error) {
				s, first, drop, err := r.installChains(ctx, runs, perRun, links)
				if err != nil {
					return nil, err
				}
				defer drop()
				q := fixture{schema: s.Schema()}.sql(`update {ork}.tasks set status = 'success' where id = any($1)`)
				var done atomic.Int64
				m := r.startMeter(ctx)
				lat, err := reportLevels(ctx, k, links, w, first, func(ctx context.Context, ids []int64) error {
					tag, err := r.pool.Exec(ctx, q, ids)
					done.Add(tag.RowsAffected())
					return err
				})
				smp := &sample{items: n, lat: lat}
				m.stop(smp)
				smp.lost = n - int(done.Load())
				return smp, err
			})
	}

	// ork-v1: process_status_updates for the successes of one batch, as its single
	// scheduler loop does, at its default batch (100) and at 1,000.
	for _, batch := range []int{100, 1000} {
		runs, perRun, links := chainLayout(sz.BatchV1Tasks, batch)
		w := runs * perRun
		n := w * links
		r.measure(Result{Scenario: sc, Variant: fmt.Sprintf("chains, batch %d", sz.BatchSize), System: SystemOrkV1,
			Config: fmt.Sprintf("1 scheduler, batch %d", batch), Unit: "transitions",
			LatencyOf: fmt.Sprintf("process_status_updates of %d successes", batch),
			Note:      fmt.Sprintf("%d tasks (fewer: it is slow)", n)},
			func(int) (*sample, error) {
				v, drop, err := r.newOrkV1(ctx)
				if err != nil {
					return nil, err
				}
				defer drop()
				levels, err := v.fixture().chains(ctx, runs, perRun, links, "pending", 0, true)
				if err != nil {
					return nil, err
				}
				var lat []time.Duration
				m := r.startMeter(ctx)
				for _, ids := range levels {
					ups := make([]v1StatusUpdate, len(ids))
					for i, id := range ids {
						ups[i] = v1StatusUpdate{id: id, status: "success"}
					}
					t := time.Now()
					if _, err := v.processStatusUpdates(ctx, ups); err != nil {
						return nil, err
					}
					lat = append(lat, time.Since(t))
				}
				smp := &sample{items: n, lat: lat}
				m.stop(smp)
				if err := r.pool.QueryRow(ctx, v.sql(`select count(*) from {ork}.tasks where status <> 'success'`)).Scan(&smp.lost); err != nil {
					return nil, err
				}
				smp.diskBytes, err = r.diskSize(ctx, v.schema)
				smp.diskItems = n
				return smp, err
			})
	}
	return nil
}

// floorPlan is what the same-write floor writes for each batch, computed before the clock.
type floorPlan struct {
	pool   *pgxpool.Pool
	schema string
	down   map[int64][]int64 // first id of a batch → the dependents its successes unblock
	runs   map[int64][]int64 // first id of a batch → its runs
	counts map[int64][]int32 // … and how many of the batch's tasks each holds
}

// floorWrites reads, before the clock, which dependents and runs each batch of the
// chains fixture touches.
func floorWrites(ctx context.Context, f fixture, k, links, w int, first int64) (*floorPlan, error) {
	p := &floorPlan{pool: f.pool, schema: f.schema, down: map[int64][]int64{}, runs: map[int64][]int64{}, counts: map[int64][]int32{}}
	per := w / k
	for l := 0; l < links; l++ {
		for j := 0; j < k; j++ {
			ids := idRange(first+int64(l*w+j*per), per)
			var down, runs []int64
			var counts []int32
			if err := f.pool.QueryRow(ctx, f.sql(`
				select coalesce((select array_agg(d order by d) from {ork}.tasks t, unnest(t.downstream) d where t.id = any($1)), '{}'),
				       coalesce(array_agg(run_id order by run_id), '{}'), coalesce(array_agg(n order by run_id), '{}')
				from (select run_id, count(*)::int n from {ork}.tasks where id = any($1) group by run_id) c`), ids).
				Scan(&down, &runs, &counts); err != nil {
				return nil, err
			}
			p.down[ids[0]], p.runs[ids[0]], p.counts[ids[0]] = down, runs, counts
		}
	}
	return p, nil
}

// apply writes one batch's rows in one round trip and one (implicit) transaction:
// the tasks to success, their queue rows out, the dependents' counters and queue
// rows in, the runs' counters. It returns the task rows written.
func (p *floorPlan) apply(ctx context.Context, ids []int64) (int64, error) {
	f := fixture{schema: p.schema}
	down := p.down[ids[0]]
	b := &pgx.Batch{}
	b.Queue(f.sql(`update {ork}.tasks set status = 'success', finished_at = now(), claimed_by = '',
		lease_expires_at = null, timeout_at = null, retry_at = null where id = any($1)`), ids)
	b.Queue(f.sql(`delete from {ork}.task_queue where task_id = any($1)`), ids)
	if len(down) > 0 {
		// a dependent with one dependency is not written: its row is locked (a tuple
		// lock, as set_task_states takes it) and it joins the queue
		b.Queue(f.sql(`select from {ork}.tasks where id = any($1) order by id for no key update`), down)
		b.Queue(f.sql(`insert into {ork}.task_queue (task_id, executor_type) select unnest($1::bigint[]), 'noop'`), down)
	}
	b.Queue(f.sql(`update {ork}.runs r set tasks_finished = r.tasks_finished + u.n
		from unnest($1::bigint[], $2::int[]) u(id, n) where r.id = u.id`), p.runs[ids[0]], p.counts[ids[0]])
	br := p.pool.SendBatch(ctx, b)
	tag, err := br.Exec()
	for i := 1; i < b.Len() && err == nil; i++ {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag.RowsAffected(), err
}

// installChains installs a fresh schema holding a chains fixture of pending tasks and
// returns the store, the first task id and the drop of the install.
func (r *runner) installChains(ctx context.Context, runs, perRun, links int) (*pgstore.Store, int64, func(), error) {
	s, drop, err := r.install(ctx)
	if err != nil {
		return nil, 0, nil, err
	}
	first, err := fixture{pool: r.pool, schema: s.Schema()}.chains(ctx, runs, perRun, links, "pending", 0)
	if err != nil {
		drop()
		return nil, 0, nil, err
	}
	return s, first, drop, nil
}

// reportSuccesses reports the tasks succeeded in one SetTaskStates call and returns
// how many of the reports were not applied.
func reportSuccesses(ctx context.Context, s *pgstore.Store, ids []int64) (notApplied int, err error) {
	ups := make([]orkstate.TaskUpdate, len(ids))
	for i, id := range ids {
		ups[i] = orkstate.TaskUpdate{TaskID: id, Status: orkstate.TaskSuccess}
	}
	out, err := s.SetTaskStates(ctx, ups)
	for _, o := range out {
		if o.Outcome != orkstate.OutcomeApplied {
			notApplied++
		}
	}
	return notApplied, err
}

// reportLevels runs k reporters over the levels of a chains fixture (level l is the w
// ids first+l*w …): reporter j reports its own slice of every level, level by level,
// in one call per level, so its chains' successes always come before their next
// links'. It returns each call's latency.
func reportLevels(ctx context.Context, k, links, w int, first int64, report func(context.Context, []int64) error) ([]time.Duration, error) {
	per := w / k
	lats := make([][]time.Duration, k)
	g, gctx := errgroup.WithContext(ctx)
	for j := 0; j < k; j++ {
		g.Go(func() error {
			for l := 0; l < links; l++ {
				ids := idRange(first+int64(l*w+j*per), per)
				t := time.Now()
				if err := report(gctx, ids); err != nil {
					return err
				}
				lats[j] = append(lats[j], time.Since(t))
			}
			return nil
		})
	}
	err := g.Wait()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	return all, err
}

// countUnfinished counts tasks not in status want and runs that did not finish.
func countUnfinished(ctx context.Context, r *runner, schema, want string) (tasks, runs int, err error) {
	f := fixture{pool: r.pool, schema: schema}
	err = r.pool.QueryRow(ctx, f.sql(`select (select count(*) from {ork}.tasks where status <> $1),
		(select count(*) from {ork}.runs where status not in ('success', 'failed', 'cancelled'))`), want).Scan(&tasks, &runs)
	return tasks, runs, err
}

// claimAll runs k claimers until none finds work and returns the ids each claimed
// and the latency of every claim call.
func claimAll(ctx context.Context, s *pgstore.Store, k, batch int) ([][]int64, []time.Duration, error) {
	ids := make([][]int64, k)
	lats := make([][]time.Duration, k)
	g, gctx := errgroup.WithContext(ctx)
	for c := 0; c < k; c++ {
		g.Go(func() error {
			name := fmt.Sprintf("claimer-%d", c)
			for {
				t := time.Now()
				got, err := s.ClaimTasks(gctx, orkstate.ClaimParams{Claimer: name, Limit: batch})
				if err != nil {
					return err
				}
				if len(got) == 0 {
					return nil
				}
				lats[c] = append(lats[c], time.Since(t))
				for _, ct := range got {
					ids[c] = append(ids[c], ct.ID)
				}
			}
		})
	}
	err := g.Wait()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	return ids, all, err
}

// dupsAndLosses compares what was processed with the n items expected.
func dupsAndLosses[K comparable](n int, ids [][]K) (dups, lost int) {
	seen := make(map[K]int, n)
	for _, l := range ids {
		for _, id := range l {
			seen[id]++
		}
	}
	for _, c := range seen {
		if c > 1 {
			dups += c - 1
		}
	}
	return dups, max(0, n-len(seen))
}

// runClaims: ready tasks claimed by 1, 2, 4, 8 concurrent claimers in batches; the
// bare UPDATE of the same rows; ork-v1's process_pending_tasks (one scheduler at
// batch 100 and 1,000, and four at once as an extra variant).
func runClaims(ctx context.Context, r *runner) error {
	sz := r.sizes
	const sc = "claims"
	n := sz.ClaimTasks
	perRun := min(1000, n)
	for _, k := range sz.Claimers {
		variant := fmt.Sprintf("%d claimers", k)
		r.measure(Result{Scenario: sc, Variant: variant, System: SystemOrkstate, Unit: "tasks",
			LatencyOf: fmt.Sprintf("claim_tasks call of %d", sz.ClaimBatch)},
			func(int) (*sample, error) {
				s, drop, err := r.install(ctx)
				if err != nil {
					return nil, err
				}
				defer drop()
				f := fixture{pool: r.pool, schema: s.Schema()}
				if _, err := f.chains(ctx, max(1, n/perRun), perRun, 1, "pending", 0); err != nil {
					return nil, err
				}
				m := r.startMeter(ctx)
				ids, lat, err := claimAll(ctx, s, k, sz.ClaimBatch)
				smp := &sample{items: n, lat: lat}
				m.stop(smp)
				smp.dups, smp.lost = dupsAndLosses(n, ids)
				return smp, err
			})
	}

	r.measure(Result{Scenario: sc, Variant: "1 claimers", System: SystemRaw, Unit: "tasks",
		LatencyOf: fmt.Sprintf("UPDATE of %d", sz.ClaimBatch), Note: "bare UPDATE of the status column only: not the same work"},
		func(int) (*sample, error) {
			s, drop, err := r.install(ctx)
			if err != nil {
				return nil, err
			}
			defer drop()
			f := fixture{pool: r.pool, schema: s.Schema()}
			first, err := f.chains(ctx, max(1, n/perRun), perRun, 1, "pending", 0)
			if err != nil {
				return nil, err
			}
			q := f.sql(`update {ork}.tasks set status = 'dispatched' where id = any($1)`)
			smp := &sample{items: n}
			m := r.startMeter(ctx)
			for off := 0; off < n; off += sz.ClaimBatch {
				t := time.Now()
				tag, err := r.pool.Exec(ctx, q, idRange(first+int64(off), min(sz.ClaimBatch, n-off)))
				if err != nil {
					return nil, err
				}
				smp.lat = append(smp.lat, time.Since(t))
				smp.lost -= int(tag.RowsAffected())
			}
			m.stop(smp)
			smp.lost += n
			return smp, nil
		})

	vn := sz.ClaimV1Tasks
	vPerRun := min(1000, vn)
	for _, cfg := range v1Configs(sz) {
		variant := fmt.Sprintf("%d claimers", cfg.schedulers)
		r.measure(Result{Scenario: sc, Variant: variant, System: SystemOrkV1, Unit: "tasks",
			Config:    cfg.String(),
			LatencyOf: fmt.Sprintf("process_pending_tasks of %d", cfg.batch),
			Note:      fmt.Sprintf("%d tasks; no SKIP LOCKED", vn)},
			func(int) (*sample, error) {
				v, drop, err := r.newOrkV1(ctx)
				if err != nil {
					return nil, err
				}
				defer drop()
				if _, err := v.fixture().chains(ctx, max(1, vn/vPerRun), vPerRun, 1, "pending", 0, false); err != nil {
					return nil, err
				}
				ids := make([][]uuid, cfg.schedulers)
				lats := make([][]time.Duration, cfg.schedulers)
				g, gctx := errgroup.WithContext(ctx)
				m := r.startMeter(ctx)
				for c := 0; c < cfg.schedulers; c++ {
					g.Go(func() error {
						for {
							t := time.Now()
							got, err := v.dispatch(gctx, cfg.batch)
							if err != nil {
								return err
							}
							if len(got) == 0 {
								return nil
							}
							lats[c] = append(lats[c], time.Since(t))
							for _, task := range got {
								ids[c] = append(ids[c], task.ID)
							}
						}
					})
				}
				err = g.Wait()
				smp := &sample{items: vn}
				m.stop(smp)
				for _, l := range lats {
					smp.lat = append(smp.lat, l...)
				}
				smp.dups, smp.lost = dupsAndLosses(vn, ids)
				return smp, err
			})
	}
	return nil
}

// runClaimLatency: the latency of a claim of one batch with 0, 100k (1M in full
// mode) blocked tasks in the table, older than the ready ones.
func runClaimLatency(ctx context.Context, r *runner) error {
	sz := r.sizes
	const sc = "claim_latency"
	for _, blocked := range sz.Blocked {
		variant := fmt.Sprintf("%s blocked", humanCount(blocked))
		// One install of blocked tasks for every repetition; each adds its ready tasks
		// (newer than the blocked ones) and claims them all.
		s, drop, err := r.install(ctx)
		if err != nil {
			return err
		}
		f := fixture{pool: r.pool, schema: s.Schema()}
		t0 := time.Now()
		if err := blockedAndReady(ctx, f, blocked, 0); err != nil {
			drop()
			return err
		}
		r.logf("    fixture: %d blocked tasks in %.1fs", blocked, time.Since(t0).Seconds())
		r.measure(Result{Scenario: sc, Variant: variant, System: SystemOrkstate, Unit: "tasks",
			LatencyOf: fmt.Sprintf("claim_tasks call of %d", sz.ClaimBatch)},
			func(int) (*sample, error) {
				perRun := min(1000, sz.LatencyReady)
				if _, err := f.chains(ctx, max(1, sz.LatencyReady/perRun), perRun, 1, "pending", 0); err != nil {
					return nil, err
				}
				m := r.startMeter(ctx)
				ids, lat, err := claimAll(ctx, s, 1, sz.ClaimBatch)
				smp := &sample{items: sz.LatencyReady, lat: lat}
				m.stop(smp)
				smp.dups, smp.lost = dupsAndLosses(sz.LatencyReady, ids)
				return smp, err
			})
		drop()

		// One fixture for every repetition: each polls V1Polls batches of its ready tasks.
		v, drop, err := r.newOrkV1(ctx)
		if err != nil {
			return err
		}
		if err := v1BlockedAndReady(ctx, v, blocked, max(sz.LatencyReady, sz.ClaimBatch*sz.V1Polls*max(1, sz.Reps))); err != nil {
			drop()
			return err
		}
		r.measure(Result{Scenario: sc, Variant: variant, System: SystemOrkV1, Unit: "tasks", Config: fmt.Sprintf("1 scheduler, batch %d", sz.ClaimBatch),
			LatencyOf: fmt.Sprintf("process_pending_tasks of %d", sz.ClaimBatch), Note: fmt.Sprintf("%d polls per repetition", sz.V1Polls)},
			func(int) (*sample, error) {
				smp := &sample{}
				m := r.startMeter(ctx)
				for i := 0; i < sz.V1Polls; i++ {
					t := time.Now()
					got, err := v.dispatch(ctx, sz.ClaimBatch)
					if err != nil {
						return nil, err
					}
					smp.lat = append(smp.lat, time.Since(t))
					smp.items += len(got)
				}
				m.stop(smp)
				return smp, nil
			})
		drop()
	}
	return nil
}

// blockedAndReady fills a schema with blocked tasks (children of running roots,
// created an hour earlier) and then ready tasks.
func blockedAndReady(ctx context.Context, f fixture, blocked, ready int) error {
	if blocked > 0 {
		children := min(1000, blocked)
		if err := f.fans(ctx, max(1, blocked/children), children, "running", time.Hour); err != nil {
			return err
		}
	}
	if ready == 0 {
		return nil
	}
	perRun := min(1000, ready)
	_, err := f.chains(ctx, max(1, ready/perRun), perRun, 1, "pending", 0)
	return err
}

// v1BlockedAndReady is blockedAndReady for ork-v1.
func v1BlockedAndReady(ctx context.Context, v *orkV1, blocked, ready int) error {
	if blocked > 0 {
		children := min(1000, blocked)
		if err := v.fixture().fans(ctx, max(1, blocked/children), children, "running", time.Hour); err != nil {
			return err
		}
	}
	perRun := min(1000, ready)
	_, err := v.fixture().chains(ctx, max(1, ready/perRun), perRun, 1, "pending", 0, false)
	return err
}

// v1Config is one configuration of ork-v1's scheduler loop.
type v1Config struct{ schedulers, batch int }

func (c v1Config) String() string {
	if c.schedulers == 1 {
		return fmt.Sprintf("1 scheduler, batch %d", c.batch)
	}
	return fmt.Sprintf("%d schedulers, batch %d", c.schedulers, c.batch)
}

// v1Configs: one scheduler as deployed, at its default batch (100) and at 1,000; and
// V1ExtraSchedulers at once as an extra variant (they dispatch tasks twice).
func v1Configs(sz Sizes) []v1Config {
	cs := []v1Config{{1, 100}, {1, 1000}}
	if sz.V1ExtraSchedulers > 1 {
		cs = append(cs, v1Config{sz.V1ExtraSchedulers, 1000})
	}
	return cs
}
