package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/orkstate/orkstate/pgstore"
)

// runPriorities (issue 13): claims of ready tasks in batches of ClaimBatch by one
// claimer, three ways in the same run:
//
//   - plain: no priority, no key, no limit (the claim's plain path);
//   - priorities and limits: the same tasks over three priorities and four keys whose
//     slots never bind (each claim goes through _pick_grouped); target ≥ 0.8× plain;
//   - held back: LatencyReady plain tasks claimed while each size of Blocked lies
//     ready behind a full key (one slot, taken); target: latency at the largest size
//     ≤ 1.2× at 0, since a claim never reads what a full pool holds back.
//
// The ratios are read from the report (same run, same machine); the variants of
// each comparison alternate per repetition (measureAlternating).
func runPriorities(ctx context.Context, r *runner) error {
	sz := r.sizes
	const sc = "priorities"
	// Fresh installs, the two variants alternating per repetition.
	var bases []Result
	for _, variant := range []string{"plain", "priorities+4 keys"} {
		bases = append(bases, Result{Scenario: sc, Variant: variant, System: SystemOrkstate, Unit: "tasks",
			Config:    fmt.Sprintf("1 claimer, batch %d", sz.ClaimBatch),
			LatencyOf: fmt.Sprintf("claim_tasks call of %d", sz.ClaimBatch), Note: "variants alternate per repetition"})
	}
	r.measureAlternating(bases, func(v, _ int) (*sample, error) {
		limited := v == 1
		// A fresh install per repetition: each fills ClaimTasks ready tasks and claims them.
		s, drop, err := r.install(ctx)
		if err != nil {
			return nil, err
		}
		defer drop()
		f := fixture{pool: r.pool, schema: s.Schema()}
		n := sz.ClaimTasks
		perRun := min(1000, n)
		first, err := f.chains(ctx, max(1, n/perRun), perRun, 1, "pending", 0)
		if err != nil {
			return nil, err
		}
		if limited {
			for k := range 4 {
				if err := s.SetConcurrencyKey(ctx, fmt.Sprintf("k%d", k), 1_000_000); err != nil {
					return nil, err
				}
			}
			if err := placeInKeys(ctx, f, first, n, `'k' || (t.id % 4)`, `(t.id % 3)::smallint`); err != nil {
				return nil, err
			}
		}
		m := r.startMeter(ctx)
		ids, lat, err := claimAll(ctx, s, 1, sz.ClaimBatch)
		smp := &sample{items: n, lat: lat}
		m.stop(smp)
		smp.dups, smp.lost = dupsAndLosses(n, ids)
		return smp, err
	})
	return heldBackLatency(ctx, r)
}

// heldBackLatency measures the claim of LatencyReady plain ready tasks beside each
// size of Blocked held back by a full key. Every install is built before any is
// measured, and each repetition visits them all in a rotating order
// (measureAlternating): each adds its ready tasks (vacuumed and analyzed, as every
// fixture), then its claims are timed. So every size is measured in the same table
// state and at the same moments of the shared machine: the 0 case used to be
// measured first, before a million rows were written, and the 1M case after them,
// likely while the checkpoint they caused wrote them out and every page a claim
// first touched after it cost a full-page image (the server's WAL per claimed task
// 1,940 B at 0 and 3,544 B at 1M in one such run). A CHECKPOINT before each repetition would even
// that out too, but took 20 s each on the shared machine. Before the repetitions,
// a claim per install is explained (rolled back): the note gives its shared
// buffers, hit and read, which say whether a claim reads what the full key holds
// back (it should not).
func heldBackLatency(ctx context.Context, r *runner) error {
	sz := r.sizes
	const sc = "priorities"
	type held struct {
		n    int
		s    *pgstore.Store
		f    fixture
		drop func()
	}
	var hs []*held
	defer func() {
		for _, h := range hs {
			h.drop()
		}
	}()
	for _, n := range sz.Blocked {
		s, drop, err := r.install(ctx)
		if err != nil {
			return err
		}
		h := &held{n: n, s: s, f: fixture{pool: r.pool, schema: s.Schema()}, drop: drop}
		hs = append(hs, h)
		if n > 0 {
			if err := holdBack(ctx, s, h.f, n); err != nil {
				return err
			}
		}
	}
	var bases []Result
	for _, h := range hs {
		bases = append(bases, Result{Scenario: sc, Variant: fmt.Sprintf("%s held back", humanCount(h.n)), System: SystemOrkstate,
			Unit: "tasks", Config: fmt.Sprintf("1 claimer, batch %d", sz.ClaimBatch),
			LatencyOf: fmt.Sprintf("claim_tasks call of %d", sz.ClaimBatch)})
	}
	// The buffers of one explained claim per install, measured before the timed
	// repetitions (the note is set before they are reported).
	for v, h := range hs {
		hit, read, err := claimBuffers(ctx, r, h.s, h.f, sz.LatencyReady, sz.ClaimBatch)
		if err != nil {
			return err
		}
		bases[v].Note = fmt.Sprintf("sizes alternate per repetition; a claim explained (the second of a transaction): %d buffers hit, %d read", hit, read)
	}
	r.measureAlternating(bases, func(v, _ int) (*sample, error) { return heldBackRep(ctx, r, hs[v].s, hs[v].f) })
	return nil
}

// heldBackRep adds LatencyReady plain ready tasks to an install and claims them all.
func heldBackRep(ctx context.Context, r *runner, s *pgstore.Store, f fixture) (*sample, error) {
	sz := r.sizes
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
}

// claimBuffers adds ready tasks to an install as a repetition does and explains
// claims of batch in a transaction it rolls back (explainClaim): the shared buffers
// one hit and read (the function scan's counts include every statement the
// function runs).
// Then it claims the tasks it added, untimed, so the install is as a repetition
// leaves it.
func claimBuffers(ctx context.Context, r *runner, s *pgstore.Store, f fixture, ready, batch int) (hit, read int64, err error) {
	perRun := min(1000, ready)
	if _, err := f.chains(ctx, max(1, ready/perRun), perRun, 1, "pending", 0); err != nil {
		return 0, 0, err
	}
	hit, read, err = explainClaim(ctx, r, f, batch)
	if err != nil {
		return 0, 0, err
	}
	_, _, err = claimAll(ctx, s, 1, batch)
	return hit, read, err
}

// explainClaim explains two claims of batch in a transaction it rolls back and
// returns the buffers of the second (the first also pays for the session's catalog
// lookups and the function's compilation).
func explainClaim(ctx context.Context, r *runner, f fixture, batch int) (hit, read int64, err error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for range 2 {
		var plan []struct {
			Plan struct {
				Hit  int64 `json:"Shared Hit Blocks"`
				Read int64 `json:"Shared Read Blocks"`
			}
		}
		var js []byte
		if err := tx.QueryRow(ctx, f.sql(`explain (analyze, buffers, format json) select * from {ork}_api.claim_tasks('explain', $1)`),
			batch).Scan(&js); err != nil {
			return 0, 0, err
		}
		if err := json.Unmarshal(js, &plan); err != nil || len(plan) != 1 {
			return 0, 0, fmt.Errorf("explain of a claim: %v (%s)", err, js)
		}
		hit, read = plan[0].Plan.Hit, plan[0].Plan.Read
	}
	return hit, read, nil
}

// holdBack adds held ready tasks of a key whose one slot is taken.
func holdBack(ctx context.Context, s *pgstore.Store, f fixture, held int) error {
	if err := s.SetConcurrencyKey(ctx, "full", 1); err != nil {
		return err
	}
	perRun := min(1000, held)
	first, err := f.chains(ctx, max(1, held/perRun), perRun, 1, "pending", 0)
	if err != nil {
		return err
	}
	if err := placeInKeys(ctx, f, first, held, `'full'`, `0::smallint`); err != nil {
		return err
	}
	_, err = f.pool.Exec(ctx, f.sql(`update {ork}.slot_pools set in_flight = 1 where key = 'full'`))
	return err
}

// placeInKeys gives the n fixture tasks from first the key and priority the SQL
// expressions compute (over t), puts them in their keys' slot groups as
// _place_run_tasks would, and files their queue rows again.
func placeInKeys(ctx context.Context, f fixture, first int64, n int, key, priority string) error {
	for _, q := range []string{
		`insert into {ork}.slot_groups (key_pool) select p.id from {ork}.slot_pools p where p.key is not null
		 on conflict do nothing`,
		`update {ork}.tasks t set concurrency_key = ` + key + `, priority = ` + priority + `
		 where t.id between $1 and $2`,
		`update {ork}.tasks t set slot_group = g.id
		 from {ork}.slot_pools p join {ork}.slot_groups g on g.key_pool = p.id and g.workflow_pool = 0 and g.fair_run = 0
		 where t.id between $1 and $2 and p.key = t.concurrency_key`,
		`select {ork}_api._queue_sync(array(select t.id from {ork}.tasks t where t.id between $1 and $2))`,
		`vacuum analyze {ork}.tasks, {ork}.task_queue`,
	} {
		args := []any{first, first + int64(n) - 1}
		if !strings.Contains(q, "$1") {
			args = nil
		}
		if _, err := f.pool.Exec(ctx, f.sql(q), args...); err != nil {
			return fmt.Errorf("place in keys: %w", err)
		}
	}
	return nil
}
