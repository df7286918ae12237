package bench

import (
	"context"
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
// The ratios are read from the report (same run, same machine).
func runPriorities(ctx context.Context, r *runner) error {
	sz := r.sizes
	const sc = "priorities"
	for _, limited := range []bool{false, true} {
		variant := "plain"
		if limited {
			variant = "priorities+4 keys"
		}
		// A fresh install per repetition: each fills ClaimTasks ready tasks and claims them.
		r.measure(Result{Scenario: sc, Variant: variant, System: SystemOrkstate, Unit: "tasks",
			Config: fmt.Sprintf("1 claimer, batch %d", sz.ClaimBatch), LatencyOf: fmt.Sprintf("claim_tasks call of %d", sz.ClaimBatch)},
			func(int) (*sample, error) {
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
	}
	for _, held := range sz.Blocked {
		variant := fmt.Sprintf("%s held back", humanCount(held))
		// One install of held-back tasks for every repetition; each adds its ready
		// tasks and claims them all.
		s, drop, err := r.install(ctx)
		if err != nil {
			return err
		}
		f := fixture{pool: r.pool, schema: s.Schema()}
		if held > 0 {
			if err := holdBack(ctx, s, f, held); err != nil {
				drop()
				return err
			}
		}
		r.measure(Result{Scenario: sc, Variant: variant, System: SystemOrkstate, Unit: "tasks",
			Config: fmt.Sprintf("1 claimer, batch %d", sz.ClaimBatch), LatencyOf: fmt.Sprintf("claim_tasks call of %d", sz.ClaimBatch)},
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
	}
	return nil
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
