package pgstore

import (
	"context"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/orkstate/orkstate"
)

// taskColumns are the columns of orkstate.Task, unqualified, in field order.
var taskColumns = taskColumnsOf("")

// taskColumnsOf is taskColumns qualified with a table alias ("" for none), for joins.
// UnmetDeps is computed ({api}.task_unmet_deps): a task with one dependency keeps 0 on
// its row, and its count is whether that dependency has not succeeded yet; a task with
// several keeps its count in task_deps_unmet.
func taskColumnsOf(alias string) string {
	p := ""
	if alias != "" {
		p = alias + "."
	}
	return strings.ReplaceAll(`$id, $run_id, $task_index, $task_name, $executor_type, $depends_on, $status, $execution_name,
	$params, $output, $error, $attempts, $max_retries, $timeout_seconds, $retry_at,
	{api}.task_unmet_deps($id, $run_id, $depends_on, $unmet_deps) as unmet_deps, $claimed_by,
	$lease_expires_at, $created_at, $dispatched_at, $started_at, $finished_at, $priority, $priority_override,
	$concurrency_key`, "$", p)
}

// scanTasks collects rows selected with taskColumns.
func scanTasks(rows pgx.Rows) ([]orkstate.Task, error) {
	return pgx.CollectRows(rows, pgx.RowToStructByName[orkstate.Task])
}

// scanTask collects exactly one row selected with taskColumns; none is ErrNotFound after translate.
func scanTask(rows pgx.Rows) (*orkstate.Task, error) {
	return pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[orkstate.Task])
}

func (s *Store) GetTask(ctx context.Context, id int64) (*orkstate.Task, error) {
	rows, err := s.db.Query(ctx, s.sql(`select `+taskColumns+` from {ork}.tasks where id = $1`), id)
	if err != nil {
		return nil, wrap(err, "pgstore: get task %d", id)
	}
	t, err := scanTask(rows)
	return t, wrap(err, "pgstore: get task %d", id)
}

// ListTasks returns ErrNotFound for a run that does not exist.
func (s *Store) ListTasks(ctx context.Context, runID int64) ([]orkstate.Task, error) {
	rows, err := s.db.Query(ctx, s.sql(`
		select `+taskColumns+` from {ork}.tasks where run_id = $1 order by task_index`), runID)
	if err != nil {
		return nil, wrap(err, "pgstore: list tasks of run %d", runID)
	}
	tasks, err := scanTasks(rows)
	if err == nil && len(tasks) == 0 {
		err = s.mustExist(ctx, `select from {ork}.runs where id = $1`, runID)
	}
	return tasks, wrap(err, "pgstore: list tasks of run %d", runID)
}

// PendingTasks scans tasks in id order: pending tasks have no index of their own,
// so that status changes stay HOT (see migration 002); this is not a hot path.
func (s *Store) PendingTasks(ctx context.Context, limit int) ([]orkstate.Task, error) {
	return s.listTasks(ctx, "pending tasks", limit, `{ork}.tasks t where t.status = 'pending'`)
}

// RunningTasks scans tasks in id order, like PendingTasks: in-flight tasks have no
// index either (migration 003 keeps only ready tasks in task_queue, so that a claim
// deletes its queue rows instead of rewriting them); this is not a hot path.
func (s *Store) RunningTasks(ctx context.Context, limit int) ([]orkstate.Task, error) {
	return s.listTasks(ctx, "running tasks", limit, `{ork}.tasks t where t.status in ('dispatched', 'running')`)
}

// DispatchableTasks uses the claim's predicate and its index (task_queue's key), at
// the claim's time (Config.Now's, else the database's).
func (s *Store) DispatchableTasks(ctx context.Context, limit int) ([]orkstate.Task, error) {
	return s.listTasks(ctx, "dispatchable tasks", limit,
		`{ork}.task_queue q join {ork}.tasks t on t.id = q.task_id
		where q.ready_at is null or q.ready_at <= coalesce($2, now())`, s.now())
}

// listTasks returns up to limit tasks (alias t) of from (constant SQL), in id order.
// limit is $1; args, if any, are $2….
func (s *Store) listTasks(ctx context.Context, what string, limit int, from string, args ...any) ([]orkstate.Task, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, s.sql(`select `+taskColumnsOf("t")+` from `+from+` order by t.id limit $1`),
		append([]any{limit}, args...)...)
	if err != nil {
		return nil, wrap(err, "pgstore: %s", what)
	}
	tasks, err := scanTasks(rows)
	return tasks, wrap(err, "pgstore: %s", what)
}

// AppendTaskLog is one statement: the running total in task_log_sizes grows only
// while it stays within MaxTaskLogBytes, and the chunk is inserted only when it did.
// The upsert locks the task's total, so concurrent appends to one task keep their order.
func (s *Store) AppendTaskLog(ctx context.Context, taskID int64, chunk string) error {
	if len(chunk) > orkstate.MaxTaskLogBytes {
		return orkstate.Invalid("chunk", nil, "longer than the task log cap of MaxTaskLogBytes")
	}
	if !utf8.ValidString(chunk) || strings.IndexByte(chunk, 0) >= 0 {
		return orkstate.Invalid("chunk", nil, "must be UTF-8 text without NUL bytes")
	}
	tag, err := s.db.Exec(ctx, s.sql(`
		with size as (
			insert into {ork}.task_log_sizes as z (task_id, bytes) values ($1, $2)
			on conflict (task_id) do update set bytes = z.bytes + excluded.bytes
				where z.bytes + excluded.bytes <= $3
			returning z.task_id)
		insert into {ork}.task_logs (task_id, chunk) select task_id, $4 from size`),
		taskID, len(chunk), orkstate.MaxTaskLogBytes, chunk)
	if err != nil {
		return wrap(err, "pgstore: append log of task %d", taskID)
	}
	if tag.RowsAffected() == 0 {
		return orkstate.Invalid("chunk", nil, "the task's log would pass MaxTaskLogBytes (4 MiB); nothing appended")
	}
	return nil
}

func (s *Store) TaskLog(ctx context.Context, taskID int64) (string, error) {
	var log string
	err := s.db.QueryRow(ctx, s.sql(`
		select coalesce((select string_agg(chunk, '' order by id) from {ork}.task_logs where task_id = t.id), '')
		from {ork}.tasks t where t.id = $1`), taskID).Scan(&log)
	if err != nil {
		return "", wrap(err, "pgstore: log of task %d", taskID)
	}
	return log, nil
}

func (s *Store) SetTaskOutput(ctx context.Context, taskID int64, output json.RawMessage) error {
	if err := orkstate.ValidJSON("output", output); err != nil {
		return err
	}
	tag, err := s.db.Exec(ctx, s.sql(`update {ork}.tasks set output = $2 where id = $1`), taskID, jsonArg(output))
	if err == nil && tag.RowsAffected() == 0 {
		err = orkstate.ErrNotFound
	}
	return wrap(err, "pgstore: set output of task %d", taskID)
}

// UpstreamOutputs maps each dependency name to its output (nil when it stored none).
func (s *Store) UpstreamOutputs(ctx context.Context, taskID int64) (map[string]json.RawMessage, error) {
	rows, err := s.db.Query(ctx, s.sql(`
		select d.task_name, d.output
		from {ork}.tasks t left join {ork}.tasks d on d.run_id = t.run_id and d.task_name = any(t.depends_on)
		where t.id = $1`), taskID)
	if err != nil {
		return nil, wrap(err, "pgstore: upstream outputs of task %d", taskID)
	}
	type upstream struct {
		TaskName *string
		Output   json.RawMessage
	}
	ups, err := pgx.CollectRows(rows, pgx.RowToStructByName[upstream])
	if err == nil && len(ups) == 0 {
		err = orkstate.ErrNotFound
	}
	if err != nil {
		return nil, wrap(err, "pgstore: upstream outputs of task %d", taskID)
	}
	out := make(map[string]json.RawMessage, len(ups))
	for _, u := range ups {
		if u.TaskName != nil {
			out[*u.TaskName] = u.Output
		}
	}
	return out, nil
}

func (s *Store) TaskRetryInfo(ctx context.Context, taskID int64) (*orkstate.RetryInfo, error) {
	rows, err := s.db.Query(ctx, s.sql(`
		select attempts, max_retries, timeout_seconds, retry_at from {ork}.tasks where id = $1`), taskID)
	if err != nil {
		return nil, wrap(err, "pgstore: retry info of task %d", taskID)
	}
	info, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[orkstate.RetryInfo])
	return info, wrap(err, "pgstore: retry info of task %d", taskID)
}

func (s *Store) TaskIdentity(ctx context.Context, taskID int64) (*orkstate.TaskIdentity, error) {
	rows, err := s.db.Query(ctx, s.sql(`
		select t.id as task_id, t.run_id, t.task_index, t.task_name, r.workflow_id, w.name as workflow_name
		from {ork}.tasks t
		join {ork}.runs r on r.id = t.run_id
		join {ork}.workflows w on w.id = r.workflow_id
		where t.id = $1`), taskID)
	if err != nil {
		return nil, wrap(err, "pgstore: identity of task %d", taskID)
	}
	id, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[orkstate.TaskIdentity])
	return id, wrap(err, "pgstore: identity of task %d", taskID)
}
