// Task reads: scanning a task row, GetTask, ListTasks and the pending, running and dispatchable lists.

package sqlitecompat

import (
	"context"
	"database/sql"

	"github.com/orkstate/orkstate"
)

const taskCols = `t.id, t.run_id, t.task_index, t.task_name, t.executor_type, t.depends_on, t.status,
	t.execution_name, t.params, t.output, t.error, t.attempts, t.max_retries, t.timeout_seconds, t.retry_at,
	` + unmetDepsExpr + `, t.claimed_by, t.lease_expires_at, t.created_at, t.dispatched_at, t.started_at, t.finished_at,
	t.priority, t.priority_override, t.concurrency_key`

// unmetDepsExpr is Task.UnmetDeps as pgstore reads it (task_unmet_deps): for a task
// with one dependency, 1 until that dependency has succeeded, whatever the task's own
// status; for the others, the counter.
const unmetDepsExpr = `CASE WHEN json_array_length(t.depends_on) = 1
		THEN NOT EXISTS (SELECT 1 FROM tasks u WHERE u.run_id = t.run_id
			AND u.task_name = json_extract(t.depends_on, '$[0]') AND u.status = 'success')
		ELSE t.unmet_deps END`

func taskDest(k *orkstate.Task, deps *string, params, output *sql.NullString, retry, lease *sql.NullInt64, created *int64, disp, started, finished, override *sql.NullInt64) []any {
	return []any{&k.ID, &k.RunID, &k.TaskIndex, &k.TaskName, &k.ExecutorType, deps, &k.Status,
		&k.ExecutionName, params, output, &k.Error, &k.Attempts, &k.MaxRetries, &k.TimeoutSeconds, retry,
		&k.UnmetDeps, &k.ClaimedBy, lease, created, disp, started, finished, &k.Priority, override, &k.ConcurrencyKey}
}

// scanTaskExtra scans taskCols followed by extra destinations.
func scanTaskExtra(r scanner, extra ...any) (*orkstate.Task, error) {
	var k orkstate.Task
	var deps string
	var params, output sql.NullString
	var retry, lease, disp, started, finished, override sql.NullInt64
	var created int64
	dest := taskDest(&k, &deps, &params, &output, &retry, &lease, &created, &disp, &started, &finished, &override)
	if err := r.Scan(append(dest, extra...)...); err != nil {
		return nil, err
	}
	var err error
	if k.DependsOn, err = parseDeps(deps); err != nil {
		return nil, err
	}
	k.Params, k.Output = fromNullJSON(params), fromNullJSON(output)
	k.RetryAt, k.LeaseExpiresAt = fromNullTS(retry), fromNullTS(lease)
	k.CreatedAt = fromTS(created)
	k.DispatchedAt, k.StartedAt, k.FinishedAt = fromNullTS(disp), fromNullTS(started), fromNullTS(finished)
	k.PriorityOverride = intPtr(override)
	return &k, nil
}

func scanTask(r scanner) (*orkstate.Task, error) { return scanTaskExtra(r) }

func getTask(ctx context.Context, q queryer, id int64) (*orkstate.Task, error) {
	return one(q.QueryRowContext(ctx, `SELECT `+taskCols+` FROM tasks t WHERE t.id = ?`, id), scanTask, "task", id)
}

func (s *Store) GetTask(ctx context.Context, id int64) (*orkstate.Task, error) {
	return getTask(ctx, s.rdb, id)
}

// ListTasks returns a run's tasks in index order; an unknown run is ErrNotFound.
func (s *Store) ListTasks(ctx context.Context, runID int64) ([]orkstate.Task, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+taskCols+` FROM tasks t WHERE t.run_id = ? ORDER BY t.task_index`, runID)
	out, err := collect(rows, err, scanTask)
	if err == nil && len(out) == 0 {
		if _, err := getRun(ctx, s.rdb, runID); err != nil {
			return nil, err
		}
	}
	return out, err
}

// PendingTasks returns up to limit pending tasks in dispatch order (id).
func (s *Store) PendingTasks(ctx context.Context, limit int) ([]orkstate.Task, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+taskCols+` FROM tasks t WHERE t.status = 'pending' ORDER BY t.id LIMIT ?`, limit)
	return collect(rows, err, scanTask)
}

// RunningTasks returns up to limit dispatched or running tasks in id order.
func (s *Store) RunningTasks(ctx context.Context, limit int) ([]orkstate.Task, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+taskCols+` FROM tasks t WHERE t.status IN ('dispatched', 'running') ORDER BY t.id LIMIT ?`, limit)
	return collect(rows, err, scanTask)
}

// dispatchableWhere is the readiness predicate; its arguments are now, the
// executor-type filter as JSON (or NULL) twice.
const dispatchableWhere = `t.status = 'pending' AND t.unmet_deps = 0 AND (t.retry_at IS NULL OR t.retry_at <= ?)
	AND (? IS NULL OR t.executor_type IN (SELECT value FROM json_each(?)))`

// DispatchableTasks lists, without claiming, what ClaimTasks would claim.
func (s *Store) DispatchableTasks(ctx context.Context, limit int) ([]orkstate.Task, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+taskCols+` FROM tasks t WHERE `+dispatchableWhere+` ORDER BY t.id LIMIT ?`,
		ts(s.clock()), nil, nil, limit)
	return collect(rows, err, scanTask)
}
