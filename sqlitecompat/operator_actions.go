// Operator actions on tasks: RetryTask and FailDependentTasks.

package sqlitecompat

import (
	"context"

	"github.com/orkstate/orkstate"
)

// RetryTask is an operator's retry: a finished task of an unfinished run goes back
// to pending with attempts reset, together with its transitive dependents that
// failed or were cancelled because of it.
func (s *Store) RetryTask(ctx context.Context, id int64) error {
	return s.write(ctx, func(t *txState) error {
		k, err := loadTaskState(t, id)
		if err != nil {
			return err
		}
		if k == nil {
			return notFound("task", id)
		}
		if !k.status.IsTerminal() {
			return invalidTransition("task %d is %s, not finished", id, k.status)
		}
		rst, err := lockRun(t, k.runID)
		if err != nil {
			return err
		}
		if rst.IsTerminal() {
			return invalidTransition("run %d of task %d is %s", k.runID, id, rst)
		}
		reset := []int64{k.id}
		queue := []int64{k.id}
		seen := map[int64]bool{k.id: true}
		for len(queue) > 0 {
			cur := queue[0]
			queue = queue[1:]
			rows, err := t.query(`SELECT d.id FROM task_deps e JOIN tasks d ON d.id = e.downstream_id
				WHERE e.upstream_id = ? AND ((d.status = 'failed' AND d.error = 'dependency failed')
				OR (d.status = 'cancelled' AND d.error = 'dependency cancelled')) ORDER BY d.id`, cur)
			if err != nil {
				return err
			}
			for rows.Next() {
				var did int64
				if err := rows.Scan(&did); err != nil {
					rows.Close()
					return err
				}
				if !seen[did] {
					seen[did] = true
					reset = append(reset, did)
					queue = append(queue, did)
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		status := orkstate.TaskPending
		if rst == orkstate.RunPaused {
			status = orkstate.TaskPaused
		}
		if _, err := t.exec(`UPDATE tasks SET status = ?, attempts = 0, error = '', output = NULL, execution_name = '', claimed_by = '',
				lease_expires_at = NULL, timeout_at = NULL, retry_at = NULL, dispatched_at = NULL, started_at = NULL,
				finished_at = NULL
			WHERE id IN (SELECT value FROM json_each(?))`, status, idsJSON(reset)); err != nil {
			return err
		}
		if err := t.recomputeUnmet(k.runID); err != nil {
			return err
		}
		t.signals |= kindTasksReady
		return nil
	})
}

// recomputeUnmet sets unmet_deps of a run's pending and paused tasks from their
// dependencies' statuses.
func (t *txState) recomputeUnmet(runID int64) error {
	_, err := t.exec(`UPDATE tasks SET unmet_deps = (
			SELECT count(*) FROM task_deps e JOIN tasks u ON u.id = e.upstream_id
			WHERE e.downstream_id = tasks.id AND u.status <> 'success')
		WHERE run_id = ? AND status IN ('pending', 'paused')`, runID)
	return err
}

// FailDependentTasks fails, transitively, the unfinished dependents of a task with
// "dependency failed" and returns how many it failed.
func (s *Store) FailDependentTasks(ctx context.Context, taskID int64) (int, error) {
	var n int
	err := s.write(ctx, func(t *txState) error {
		k, err := loadTaskState(t, taskID)
		if err != nil {
			return err
		}
		if k == nil {
			return notFound("task", taskID)
		}
		if k.status != orkstate.TaskFailed {
			return invalidTransition("task %d is %s; only a failed task's dependents can be failed", taskID, k.status)
		}
		n, err = t.propagate(k.runID, k.id, orkstate.TaskFailed, "dependency failed")
		return err
	})
	return n, err
}
