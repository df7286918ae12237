package bench

import (
	"context"
	"fmt"
	"strings"
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
func runPriorities(ctx context.Context, r *runner) error {
	sz := r.sizes
	const sc = "priorities"
	plain := 0.0
	for _, limited := range []bool{false, true} {
		variant := "plain"
		if limited {
			variant = "priorities+4 keys"
		}
		r.try(sc, variant, SystemOrkstate, func() error {
			s, drop, err := r.install(ctx)
			if err != nil {
				return err
			}
			defer drop()
			f := fixture{pool: r.pool, schema: s.Schema()}
			n := sz.ClaimTasks
			perRun := min(1000, n)
			first, err := f.chains(ctx, max(1, n/perRun), perRun, 1, "pending", 0)
			if err != nil {
				return err
			}
			if limited {
				for k := range 4 {
					if err := s.SetConcurrencyKey(ctx, fmt.Sprintf("k%d", k), 1_000_000); err != nil {
						return err
					}
				}
				if err := placeInKeys(ctx, f, first, n, `'k' || (t.id % 4)`, `(t.id % 3)::smallint`); err != nil {
					return err
				}
			}
			ids, lat, secs, err := claimAll(ctx, s, 1, sz.ClaimBatch)
			if err != nil {
				return err
			}
			dups, lost := dupsAndLosses(n, ids)
			p50, p99 := percentiles(lat)
			res := Result{Scenario: sc, Variant: variant, System: SystemOrkstate, Items: n, Unit: "tasks",
				Seconds: secs, P50Ms: p50, P99Ms: p99, LatencyOf: fmt.Sprintf("claim_tasks call of %d", sz.ClaimBatch),
				Duplicates: dups, Losses: lost}
			if !limited {
				plain = float64(n) / secs
			} else if plain > 0 {
				res.Ratios = map[string]float64{"x plain": float64(n) / secs / plain}
			}
			r.add(res)
			return nil
		})
	}
	p50AtZero := 0.0
	for _, held := range sz.Blocked {
		variant := fmt.Sprintf("%s held back", humanCount(held))
		r.try(sc, variant, SystemOrkstate, func() error {
			s, drop, err := r.install(ctx)
			if err != nil {
				return err
			}
			defer drop()
			f := fixture{pool: r.pool, schema: s.Schema()}
			if held > 0 {
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
				// the key's one slot is taken
				if _, err := r.pool.Exec(ctx, f.sql(`update {ork}.slot_pools set in_flight = 1 where key = 'full'`)); err != nil {
					return err
				}
			}
			perRun := min(1000, sz.LatencyReady)
			if _, err := f.chains(ctx, max(1, sz.LatencyReady/perRun), perRun, 1, "pending", 0); err != nil {
				return err
			}
			ids, lat, secs, err := claimAll(ctx, s, 1, sz.ClaimBatch)
			if err != nil {
				return err
			}
			dups, lost := dupsAndLosses(sz.LatencyReady, ids)
			p50, p99 := percentiles(lat)
			res := Result{Scenario: sc, Variant: variant, System: SystemOrkstate, Items: sz.LatencyReady, Unit: "tasks",
				Seconds: secs, P50Ms: p50, P99Ms: p99, LatencyOf: fmt.Sprintf("claim_tasks call of %d", sz.ClaimBatch),
				Duplicates: dups, Losses: lost}
			if held == 0 {
				p50AtZero = p50
			} else if p50AtZero > 0 {
				res.Ratios = map[string]float64{"p50 x 0 held": p50 / p50AtZero}
			}
			r.add(res)
			return nil
		})
	}
	return nil
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
