package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

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
// one backend, so one core, busy), each reporting its own chains; the raw ceiling is
// measured the same two ways.
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

		// orkstate: set_task_states
		r.try(sc, variant, SystemOrkstate, func() error {
			s, first, drop, err := r.installChains(ctx, runs, perRun, links)
			if err != nil {
				return err
			}
			defer drop()
			var notApplied atomic.Int64
			lat, secs, err := reportLevels(ctx, k, links, w, first, func(ctx context.Context, ids []int64) error {
				ups := make([]orkstate.TaskUpdate, len(ids))
				for i, id := range ids {
					ups[i] = orkstate.TaskUpdate{TaskID: id, Status: orkstate.TaskSuccess}
				}
				out, err := s.SetTaskStates(ctx, ups)
				for _, o := range out {
					if o.Outcome != orkstate.OutcomeApplied {
						notApplied.Add(1)
					}
				}
				return err
			})
			if err != nil {
				return err
			}
			lost, unfinishedRuns, err := countUnfinished(ctx, r, s.Schema(), "success")
			if err != nil {
				return err
			}
			p50, p99 := percentiles(lat)
			res := Result{Scenario: sc, Variant: variant, System: SystemOrkstate, Items: n, Unit: "transitions",
				Seconds: secs, P50Ms: p50, P99Ms: p99, LatencyOf: fmt.Sprintf("set_task_states call of %d", sz.BatchSize),
				Duplicates: int(notApplied.Load()), Losses: lost}
			if unfinishedRuns > 0 {
				res.Note = fmt.Sprintf("%d runs not finished", unfinishedRuns)
			}
			r.add(res)
			return nil
		})

		// raw ceiling: the same rows, a bare bulk UPDATE per batch.
		r.try(sc, variant, SystemRaw, func() error {
			s, first, drop, err := r.installChains(ctx, runs, perRun, links)
			if err != nil {
				return err
			}
			defer drop()
			q := fixture{schema: s.Schema()}.sql(`update {ork}.tasks set status = 'success' where id = any($1)`)
			var done atomic.Int64
			lat, secs, err := reportLevels(ctx, k, links, w, first, func(ctx context.Context, ids []int64) error {
				tag, err := r.pool.Exec(ctx, q, ids)
				done.Add(tag.RowsAffected())
				return err
			})
			if err != nil {
				return err
			}
			p50, p99 := percentiles(lat)
			r.add(Result{Scenario: sc, Variant: variant, System: SystemRaw, Items: n, Unit: "transitions",
				Seconds: secs, P50Ms: p50, P99Ms: p99, LatencyOf: fmt.Sprintf("UPDATE of %d", sz.BatchSize),
				Losses: n - int(done.Load())})
			return nil
		})

		// ork-v1: one UPDATE per row in a transaction, then the follow-ups per row.
		r.try(sc, variant, SystemOrkV1, func() error {
			v, drop, err := r.newOrkV1(ctx)
			if err != nil {
				return err
			}
			defer drop()
			vLinks := max(1, sz.BatchV1Tasks/w)
			vn := w * vLinks
			first, err := v.fixture().chains(ctx, runs, perRun, vLinks, "pending", 0)
			if err != nil {
				return err
			}
			lat, secs, err := reportLevels(ctx, k, vLinks, w, first, func(ctx context.Context, ids []int64) error {
				return v.report(ctx, ids, orkstate.TaskSuccess)
			})
			if err != nil {
				return err
			}
			var lost int
			if err := r.pool.QueryRow(ctx, v.sql(`select count(*) from {ork}.tasks where status <> 'success'`)).Scan(&lost); err != nil {
				return err
			}
			p50, p99 := percentiles(lat)
			r.add(Result{Scenario: sc, Variant: variant, System: SystemOrkV1, Items: vn, Unit: "transitions",
				Seconds: secs, P50Ms: p50, P99Ms: p99, LatencyOf: fmt.Sprintf("report of %d with follow-ups", sz.BatchSize),
				Losses: lost, Note: fmt.Sprintf("%d tasks (fewer: it is slow)", vn)})
			return nil
		})
	}
	return nil
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

// reportLevels runs k reporters over the levels of a chains fixture (level l is the w
// ids first+l*w …): reporter j reports its own slice of every level, level by level,
// in one call per level, so its chains' successes always come before their next
// links'. It returns each call's latency and the wall time.
func reportLevels(ctx context.Context, k, links, w int, first int64, report func(context.Context, []int64) error) ([]time.Duration, float64, error) {
	per := w / k
	lats := make([][]time.Duration, k)
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
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
	secs := time.Since(start).Seconds()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	return all, secs, err
}

// countUnfinished counts tasks not in status want and runs that did not finish.
func countUnfinished(ctx context.Context, r *runner, schema, want string) (tasks, runs int, err error) {
	f := fixture{pool: r.pool, schema: schema}
	err = r.pool.QueryRow(ctx, f.sql(`select (select count(*) from {ork}.tasks where status <> $1),
		(select count(*) from {ork}.runs where status not in ('success', 'failed', 'cancelled'))`), want).Scan(&tasks, &runs)
	return tasks, runs, err
}

// claimAll runs k claimers until none finds work and returns the ids each claimed,
// the latency of every claim call and the wall time.
func claimAll(ctx context.Context, s *pgstore.Store, k, batch int) ([][]int64, []time.Duration, float64, error) {
	ids := make([][]int64, k)
	lats := make([][]time.Duration, k)
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
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
	secs := time.Since(start).Seconds()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	return ids, all, secs, err
}

// dupsAndLosses compares what was processed with the n items expected.
func dupsAndLosses(n int, ids [][]int64) (dups, lost int) {
	seen := make(map[int64]int, n)
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

// runClaims: ready tasks claimed by 1, 2, 4, 8 concurrent claimers in batches.
func runClaims(ctx context.Context, r *runner) error {
	sz := r.sizes
	const sc = "claims"
	n := sz.ClaimTasks
	for _, k := range sz.Claimers {
		variant := fmt.Sprintf("%d claimers", k)
		r.try(sc, variant, SystemOrkstate, func() error {
			s, drop, err := r.install(ctx)
			if err != nil {
				return err
			}
			defer drop()
			f := fixture{pool: r.pool, schema: s.Schema()}
			perRun := min(1000, n)
			if _, err := f.chains(ctx, max(1, n/perRun), perRun, 1, "pending", 0); err != nil {
				return err
			}
			ids, lat, secs, err := claimAll(ctx, s, k, sz.ClaimBatch)
			if err != nil {
				return err
			}
			dups, lost := dupsAndLosses(n, ids)
			p50, p99 := percentiles(lat)
			r.add(Result{Scenario: sc, Variant: variant, System: SystemOrkstate, Items: n, Unit: "tasks",
				Seconds: secs, P50Ms: p50, P99Ms: p99, LatencyOf: fmt.Sprintf("claim_tasks call of %d", sz.ClaimBatch),
				Duplicates: dups, Losses: lost})
			return nil
		})
	}

	// raw ceiling: the same rows set to dispatched by a bare bulk UPDATE per batch.
	r.try(sc, "1 writer", SystemRaw, func() error {
		s, drop, err := r.install(ctx)
		if err != nil {
			return err
		}
		defer drop()
		f := fixture{pool: r.pool, schema: s.Schema()}
		perRun := min(1000, n)
		first, err := f.chains(ctx, max(1, n/perRun), perRun, 1, "pending", 0)
		if err != nil {
			return err
		}
		q := f.sql(`update {ork}.tasks set status = 'dispatched' where id = any($1)`)
		var lat []time.Duration
		done := 0
		start := time.Now()
		for off := 0; off < n; off += sz.ClaimBatch {
			t := time.Now()
			tag, err := r.pool.Exec(ctx, q, idRange(first+int64(off), min(sz.ClaimBatch, n-off)))
			if err != nil {
				return err
			}
			lat = append(lat, time.Since(t))
			done += int(tag.RowsAffected())
		}
		secs := time.Since(start).Seconds()
		p50, p99 := percentiles(lat)
		r.add(Result{Scenario: sc, Variant: "1 writer", System: SystemRaw, Items: n, Unit: "tasks", Seconds: secs,
			P50Ms: p50, P99Ms: p99, LatencyOf: fmt.Sprintf("UPDATE of %d", sz.ClaimBatch), Losses: n - done})
		return nil
	})

	// ork-v1: its dispatch poll, by k schedulers at once.
	vn := sz.ClaimV1Tasks
	for _, k := range sz.Claimers {
		variant := fmt.Sprintf("%d claimers", k)
		r.try(sc, variant, SystemOrkV1, func() error {
			v, drop, err := r.newOrkV1(ctx)
			if err != nil {
				return err
			}
			defer drop()
			perRun := min(1000, vn)
			if _, err := v.fixture().chains(ctx, max(1, vn/perRun), perRun, 1, "pending", 0); err != nil {
				return err
			}
			ids := make([][]int64, k)
			lats := make([][]time.Duration, k)
			g, gctx := errgroup.WithContext(ctx)
			start := time.Now()
			for c := 0; c < k; c++ {
				g.Go(func() error {
					for {
						t := time.Now()
						got, err := v.dispatch(gctx, sz.ClaimBatch)
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
			if err := g.Wait(); err != nil {
				return err
			}
			secs := time.Since(start).Seconds()
			var all []time.Duration
			for _, l := range lats {
				all = append(all, l...)
			}
			dups, lost := dupsAndLosses(vn, ids)
			p50, p99 := percentiles(all)
			r.add(Result{Scenario: sc, Variant: variant, System: SystemOrkV1, Items: vn, Unit: "tasks", Seconds: secs,
				P50Ms: p50, P99Ms: p99, LatencyOf: fmt.Sprintf("dispatch poll of %d", sz.ClaimBatch),
				Duplicates: dups, Losses: lost, Note: fmt.Sprintf("%d tasks; no SKIP LOCKED", vn)})
			return nil
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
		r.try(sc, variant, SystemOrkstate, func() error {
			s, drop, err := r.install(ctx)
			if err != nil {
				return err
			}
			defer drop()
			f := fixture{pool: r.pool, schema: s.Schema()}
			t0 := time.Now()
			if err := blockedAndReady(ctx, f, blocked, sz.LatencyReady); err != nil {
				return err
			}
			r.logf("    fixture: %d blocked + %d ready tasks in %.1fs", blocked, sz.LatencyReady, time.Since(t0).Seconds())
			ids, lat, secs, err := claimAll(ctx, s, 1, sz.ClaimBatch)
			if err != nil {
				return err
			}
			dups, lost := dupsAndLosses(sz.LatencyReady, ids)
			p50, p99 := percentiles(lat)
			r.add(Result{Scenario: sc, Variant: variant, System: SystemOrkstate, Items: sz.LatencyReady, Unit: "tasks",
				Seconds: secs, P50Ms: p50, P99Ms: p99, LatencyOf: fmt.Sprintf("claim_tasks call of %d", sz.ClaimBatch),
				Duplicates: dups, Losses: lost})
			return nil
		})

		r.try(sc, variant, SystemOrkV1, func() error {
			v, drop, err := r.newOrkV1(ctx)
			if err != nil {
				return err
			}
			defer drop()
			if err := blockedAndReady(ctx, v.fixture(), blocked, sz.LatencyReady); err != nil {
				return err
			}
			var lat []time.Duration
			items := 0
			start := time.Now()
			for i := 0; i < sz.V1Polls; i++ {
				t := time.Now()
				got, err := v.dispatch(ctx, sz.ClaimBatch)
				if err != nil {
					return err
				}
				lat = append(lat, time.Since(t))
				items += len(got)
			}
			secs := time.Since(start).Seconds()
			p50, p99 := percentiles(lat)
			r.add(Result{Scenario: sc, Variant: variant, System: SystemOrkV1, Items: items, Unit: "tasks",
				Seconds: secs, P50Ms: p50, P99Ms: p99, LatencyOf: fmt.Sprintf("dispatch poll of %d", sz.ClaimBatch),
				Note: fmt.Sprintf("%d polls", sz.V1Polls)})
			return nil
		})
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
	perRun := min(1000, ready)
	_, err := f.chains(ctx, max(1, ready/perRun), perRun, 1, "pending", 0)
	return err
}
