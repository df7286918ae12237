package bench

import (
	"context"
	"fmt"
	"time"
)

// The calibration measures two of ork-v1's statements alone, to be read against an
// independent replay of the original's SQL (the figures of issue 12): if they land
// near it, the baseline is the original, not a caricature of it.
const (
	calibUpdateRef   = "independent replay of the original's SQL: about 6,500 rows/s"
	calibDispatchRef = "independent replay of the original's SQL: about 300 ms per poll"
)

// runCalibration: ork-v1's batch status update (batch_update_task_status: 1,000
// single-row UPDATEs in one transaction) and its dispatch query (limit 100, with
// CalibPending pending tasks), each measured alone.
func runCalibration(ctx context.Context, r *runner) error {
	sz := r.sizes
	const sc = "calibration"
	runs, perRun, links := chainLayout(sz.CalibUpdates, 1000)
	n := runs * perRun * links
	r.measure(Result{Scenario: sc, Variant: "batch_update_task_status of 1,000", System: SystemOrkV1, Unit: "rows",
		LatencyOf: "transaction of 1,000 single-row UPDATEs", Note: calibUpdateRef},
		func(int) (*sample, error) {
			v, drop, err := r.newOrkV1(ctx)
			if err != nil {
				return nil, err
			}
			defer drop()
			levels, err := v.fixture().chains(ctx, runs, perRun, links, "running", 0, true)
			if err != nil {
				return nil, err
			}
			smp := &sample{items: n}
			m := r.startMeter(ctx)
			for _, ids := range levels {
				ups := make([]v1Update, len(ids))
				for i, id := range ids {
					ups[i] = v1Update{id: id, status: "success"}
				}
				t := time.Now()
				if err := v.batchUpdate(ctx, ups); err != nil {
					return nil, err
				}
				smp.lat = append(smp.lat, time.Since(t))
			}
			m.stop(smp)
			return smp, nil
		})

	// Pending tasks two ways: all ready (the sort decides), and all but 1,000 blocked
	// behind a running root (the dependency re-check decides). One fixture per shape,
	// polled V1Polls times per repetition: the query changes nothing.
	pending := sz.CalibPending
	for _, blocked := range []bool{false, true} {
		shape := "ready"
		if blocked {
			shape = "blocked"
		}
		v, drop, err := r.newOrkV1(ctx)
		if err != nil {
			return err
		}
		if blocked {
			err = v1BlockedAndReady(ctx, v, pending-1000, 1000)
		} else {
			perRun := min(1000, pending)
			_, err = v.fixture().chains(ctx, max(1, pending/perRun), perRun, 1, "pending", 0, false)
		}
		if err != nil {
			drop()
			return err
		}
		r.measure(Result{Scenario: sc, Variant: fmt.Sprintf("dispatch query, limit 100, %s pending, %s", humanCount(pending), shape), System: SystemOrkV1,
			Unit: "tasks", LatencyOf: "get_pending_tasks_with_workflow, limit 100", Note: calibDispatchRef},
			func(int) (*sample, error) {
				smp := &sample{}
				m := r.startMeter(ctx)
				for i := 0; i < sz.V1Polls; i++ {
					t := time.Now()
					rows, err := v.pool.Query(ctx, v.sql(v1PendingTasks), 100, "pending", "running", "success", "failed")
					if err != nil {
						return nil, err
					}
					for rows.Next() {
						smp.items++
					}
					if err := rows.Err(); err != nil {
						return nil, err
					}
					smp.lat = append(smp.lat, time.Since(t))
				}
				m.stop(smp)
				return smp, nil
			})
		drop()
	}
	return nil
}
