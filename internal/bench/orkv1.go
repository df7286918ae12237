package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// orkV1 is the baseline: the original store, Ork's ork-state PostgresDatabase
// (github.com/gajop/ork), driven the way its scheduler loop drives it. Its schema is
// the one its migrations 001–012 leave behind (UUID keys, every index), and every
// statement below is the one its code sends, in the same order and batching; each
// carries the file and line it comes from, relative to the repository root:
//
//	state: crates/ork-state/src/postgres/   (tasks.rs, runs.rs, workflows.rs)
//	loop:  crates/ork-core/src/scheduler.rs and scheduler/processing.rs
//
// Executors are instant: a dispatched task reports "running" and then "success" to
// the scheduler's channel at once, so the same loop iteration drains both (the
// kindest timing the original can get). Migration 013 (run snapshots) is not part
// of the baseline: runs start from workflow_tasks, the path processing.rs:68 takes
// for runs without a snapshot.
type orkV1 struct {
	pool   *pgxpool.Pool
	schema string
}

// uuid is a key of the original's tables (gen_random_uuid(), version 4).
type uuid = [16]byte

// orkV1Schema is the end state of crates/ork-state/migrations/001–012, column order
// included (columns added by ALTER TABLE come last, as they do on disk).
const orkV1Schema = `
create schema {ork};
-- 001_init.sql:2-12, 002:2 (executor_type; its check is dropped by 006:9), 004 renames, 009:2-5
create table {ork}.workflows (
    id uuid primary key default gen_random_uuid(),
    name text not null unique,
    description text,
    job_name text not null,
    region text not null default 'us-central1',
    project text not null,
    task_params jsonb,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    executor_type text not null default 'cloudrun',
    schedule text,
    schedule_enabled boolean not null default false,
    last_scheduled_at timestamptz,
    next_scheduled_at timestamptz
);
-- 001_init.sql:15-24, status check as 010:1-4
create table {ork}.runs (
    id uuid primary key default gen_random_uuid(),
    workflow_id uuid not null references {ork}.workflows(id),
    status text not null check (status in ('pending', 'running', 'paused', 'success', 'failed', 'cancelled')),
    triggered_by text not null default 'manual',
    started_at timestamptz,
    finished_at timestamptz,
    error text,
    created_at timestamptz not null default now()
);
create index idx_runs_status on {ork}.runs(status);                       -- 001:26
create index idx_runs_workflow_id on {ork}.runs(workflow_id);             -- 001:27
-- 001_init.sql:30-44 (execution_name renamed by 004:12), 005:11-13, 006:12, 007:2, 008:2-11, status check 010:6-9
create table {ork}.tasks (
    id uuid primary key default gen_random_uuid(),
    run_id uuid not null references {ork}.runs(id) on delete cascade,
    task_index integer not null,
    status text not null check (status in ('pending', 'paused', 'dispatched', 'running', 'success', 'failed', 'cancelled')),
    execution_name text,
    params jsonb,
    output jsonb,
    error text,
    dispatched_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    created_at timestamptz not null default now(),
    task_name text not null,
    depends_on text[] not null default '{}'::text[],
    executor_type text not null,
    logs text,
    attempts int not null default 0,
    max_retries int not null default 0,
    timeout_seconds int,
    retry_at timestamptz,
    unique (run_id, task_index)                                           -- 001:43
);
create index idx_tasks_run_id on {ork}.tasks(run_id);                     -- 001:46
create index idx_tasks_status on {ork}.tasks(status);                     -- 001:47
create index idx_workflows_executor_type on {ork}.workflows(executor_type); -- 003:4
create index idx_tasks_status_run_id on {ork}.tasks(status, run_id)
    where status in ('pending', 'dispatched', 'running');                 -- 003:10
create index idx_tasks_run_status on {ork}.tasks(run_id, status);        -- 003:13
create index idx_tasks_execution_name on {ork}.tasks(execution_name)
    where execution_name is not null;                                     -- 003:16
create index idx_tasks_run_task_name on {ork}.tasks(run_id, task_name);  -- 005:22
create index idx_tasks_executor_type on {ork}.tasks(executor_type);      -- 006:27
-- 006_workflow_tasks.sql:29-43, 011:1
create table {ork}.workflow_tasks (
    id uuid default gen_random_uuid() not null primary key,
    workflow_id uuid not null references {ork}.workflows(id) on delete cascade,
    task_index integer not null,
    task_name text not null,
    executor_type text not null,
    depends_on text[] default '{}'::text[] not null,
    params jsonb,
    created_at timestamptz default now() not null,
    signature jsonb,
    unique (workflow_id, task_name)
);
create index idx_workflow_tasks_workflow_id on {ork}.workflow_tasks(workflow_id); -- 006:45
create index idx_workflows_next_scheduled on {ork}.workflows(next_scheduled_at)
    where schedule_enabled = true;                                        -- 009:8
-- 012_add_deferred_jobs.sql:1-17
create table {ork}.deferred_jobs (
    id uuid primary key default gen_random_uuid(),
    task_id uuid not null references {ork}.tasks(id) on delete cascade,
    service_type text not null,
    job_id text not null,
    job_data jsonb not null,
    status text not null check (status in ('pending', 'polling', 'completed', 'failed', 'cancelled')),
    error text,
    created_at timestamptz not null default now(),
    started_at timestamptz,
    last_polled_at timestamptz,
    finished_at timestamptz
);
create index idx_deferred_jobs_status on {ork}.deferred_jobs(status);
create index idx_deferred_jobs_task_id on {ork}.deferred_jobs(task_id);
create index idx_deferred_jobs_created_at on {ork}.deferred_jobs(created_at);
`

// newOrkV1 creates the baseline's schema.
func (r *runner) newOrkV1(ctx context.Context) (*orkV1, func(), error) {
	v := &orkV1{pool: r.pool, schema: r.schemaName("benchv1")}
	drop := func() { dropSchema(context.WithoutCancel(ctx), r.pool, v.schema) }
	if _, err := r.pool.Exec(ctx, v.sql(orkV1Schema)); err != nil {
		drop()
		return nil, func() {}, fmt.Errorf("ork-v1 schema: %w", err)
	}
	return v, drop, nil
}

func (v *orkV1) sql(q string) string { return strings.ReplaceAll(q, "{ork}", v.schema) }

// The statements, as the original sends them (its $n numbering kept).
const (
	// tasks.rs:101-107, batch_update_task_status_impl: one per update, in one transaction (tasks.rs:97-123).
	v1UpdateTask = `UPDATE {ork}.tasks SET status = $1, execution_name = COALESCE($2, execution_name), error = $3,
                attempts = CASE WHEN $1 = $5 THEN attempts + 1 ELSE attempts END,
                retry_at = CASE WHEN $1 IN ($6, $7) THEN retry_at ELSE NULL END,
                dispatched_at = COALESCE(dispatched_at, CASE WHEN $1 = $8 THEN NOW() ELSE NULL END),
                started_at = COALESCE(started_at, CASE WHEN $1 = $9 THEN NOW() ELSE NULL END),
                finished_at = CASE WHEN $1 IN ($10, $5, $11) THEN NOW() ELSE NULL END
                WHERE id = $4 AND (status NOT IN ($10, $5) OR $1 IN ($10, $5))`

	// tasks.rs:185-201, get_pending_tasks_with_workflow_impl: the dispatch poll.
	v1PendingTasks = `SELECT t.id as task_id, t.run_id, t.task_index, t.task_name, t.executor_type, t.depends_on,
            t.status as task_status, t.attempts, t.max_retries, t.timeout_seconds, t.retry_at, t.execution_name, t.params,
            w.id as workflow_id, w.job_name, w.project, w.region
            FROM {ork}.tasks t JOIN {ork}.runs r ON t.run_id = r.id JOIN {ork}.workflows w ON r.workflow_id = w.id
            WHERE t.status = $2
            AND r.status = $3
            AND (t.retry_at IS NULL OR t.retry_at <= NOW())
            AND (cardinality(t.depends_on) = 0 OR NOT EXISTS (
                SELECT 1 FROM unnest(t.depends_on) AS dep_name
                WHERE NOT EXISTS (
                    SELECT 1 FROM {ork}.tasks t2
                    WHERE t2.run_id = t.run_id
                    AND t2.task_name = dep_name
                    AND t2.status IN ($4, $5)
                )
            ))
            ORDER BY t.created_at LIMIT $1`

	// workflows.rs:112, get_workflows_by_ids_impl.
	v1WorkflowsByIDs = `SELECT * FROM {ork}.workflows WHERE id = ANY($1)`
	// tasks.rs:220, get_task_outputs_impl: once per run with dependencies in the batch (processing.rs:145-158).
	v1TaskOutputs = `SELECT task_name, output FROM {ork}.tasks WHERE run_id = $1 AND task_name = ANY($2) AND output IS NOT NULL`
	// tasks.rs:237, get_task_retry_meta_impl: once per report batch, for its failures only (processing.rs:232-241).
	v1RetryMeta = `SELECT id, attempts, max_retries FROM {ork}.tasks WHERE id = ANY($1)`
	// tasks.rs:171, reset_task_for_retry_impl: per failed task with retries left (processing.rs:323-325).
	v1ResetForRetry = `UPDATE {ork}.tasks SET status = $1, attempts = attempts + 1, retry_at = $2, error = COALESCE($3, error), execution_name = NULL, output = NULL, dispatched_at = NULL, started_at = NULL, finished_at = NULL WHERE id = $4`
	// tasks.rs:258, get_task_identity_impl: per success or failure (processing.rs:343-344).
	v1TaskIdentity = `SELECT run_id, task_name FROM {ork}.tasks WHERE id = $1`
	// tasks.rs:273, mark_tasks_failed_by_dependency_impl: one per level of a failed run (processing.rs:360-372).
	v1FailDependents = `UPDATE {ork}.tasks SET status = $1, error = $2, finished_at = NOW() WHERE run_id = $3 AND status IN ($4, $5) AND depends_on && $6 RETURNING task_name`
	// runs.rs:249, get_run_task_stats_impl: once per distinct run of the batch (processing.rs:376-378, 420).
	v1RunStats = `SELECT COUNT(*) as total, COUNT(*) FILTER (WHERE status IN ($1, $2)) as completed, COUNT(*) FILTER (WHERE status = $2) as failed FROM {ork}.tasks WHERE run_id = $3`
	// runs.rs:51, update_run_status_impl (processing.rs:100, 429).
	v1UpdateRun = `UPDATE {ork}.runs SET status = $1, error = $2, started_at = COALESCE(started_at, CASE WHEN $1 = $3 THEN NOW() ELSE NULL END), finished_at = CASE WHEN $1 IN ($4, $5, $6) THEN NOW() ELSE NULL END WHERE id = $7`
	// workflows.rs:165-169, get_due_scheduled_workflows_impl: first thing of every loop (scheduler.rs:156, schedule_processor.rs:12).
	v1DueWorkflows = `SELECT * FROM {ork}.workflows
               WHERE schedule_enabled = true
               AND schedule IS NOT NULL
               AND (next_scheduled_at IS NULL OR next_scheduled_at <= NOW())
               ORDER BY next_scheduled_at NULLS FIRST`
	// runs.rs:219, get_pending_runs_impl: every pending run, no limit (processing.rs:6).
	v1PendingRuns = `SELECT * FROM {ork}.runs WHERE status = $1`
	// workflows.rs:155, list_workflow_tasks_impl: per workflow of the pending runs (processing.rs:26-31).
	v1WorkflowTasks = `SELECT * FROM {ork}.workflow_tasks WHERE workflow_id = $1 ORDER BY task_index`
	// tasks.rs:42, batch_create_dag_tasks_impl: one per task, in one transaction per run (tasks.rs:40-55).
	v1InsertTask = `INSERT INTO {ork}.tasks (run_id, task_index, task_name, executor_type, depends_on, status, attempts, max_retries, timeout_seconds, params) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9) ON CONFLICT (run_id, task_index) DO NOTHING`
	// tasks.rs:142, get_running_tasks_impl: enforce_timeouts, every loop (scheduler.rs:196, processing.rs:384).
	v1RunningTasks = `SELECT * FROM {ork}.tasks WHERE status IN ($1, $2)`
	// runs.rs:227-244, cancel_run_impl: two statements in one transaction.
	v1CancelRun      = `UPDATE {ork}.runs SET status = $1, finished_at = NOW() WHERE id = $2 AND status NOT IN ($3, $4, $5)`
	v1CancelRunTasks = `UPDATE {ork}.tasks SET status = $1, finished_at = NOW() WHERE run_id = $2 AND status IN ($3, $4, $5)`
	// runs.rs:34, create_run_impl (without 013's snapshot_id).
	v1CreateRun = `INSERT INTO {ork}.runs (workflow_id, status, triggered_by) VALUES ($1, $2, $3) RETURNING *`
)

// v1Update is one element of batch_update_task_status: (task_id, status, execution_name, error).
type v1Update struct {
	id            uuid
	status        string
	executionName *string
	errText       *string
}

// batchUpdate is batch_update_task_status_impl (tasks.rs:90-125): one UPDATE per
// element, in order, in one transaction.
func (v *orkV1) batchUpdate(ctx context.Context, ups []v1Update) error {
	if len(ups) == 0 {
		return nil
	}
	q := v.sql(v1UpdateTask)
	return pgx.BeginFunc(ctx, v.pool, func(tx pgx.Tx) error {
		for _, u := range ups {
			if _, err := tx.Exec(ctx, q, u.status, u.executionName, u.errText, u.id,
				"failed", "pending", "paused", "dispatched", "running", "success", "cancelled"); err != nil {
				return err
			}
		}
		return nil
	})
}

// v1Task is the part of a dispatched TaskWithWorkflow the loop uses.
type v1Task struct {
	ID         uuid
	RunID      uuid
	WorkflowID uuid
	Deps       []string
}

// v1StatusUpdate is an executor's StatusUpdate (crates/ork-core/src/executor.rs).
type v1StatusUpdate struct {
	id     uuid
	status string
	err    *string
}

// dispatch is process_pending_tasks (processing.rs:110-226) with instant executors:
// the poll, the workflows of the batch, the upstream outputs once per run, and the
// batch update to dispatched. The poll locks nothing: two schedulers get the same tasks.
func (v *orkV1) dispatch(ctx context.Context, limit int) ([]v1Task, error) {
	rows, err := v.pool.Query(ctx, v.sql(v1PendingTasks), limit, "pending", "running", "success", "failed")
	if err != nil {
		return nil, err
	}
	tasks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (v1Task, error) {
		var t v1Task
		var (
			index, attempts, maxRetries    int32
			name, executorType, taskStatus string
			timeout                        *int32
			retryAt                        any
			execName                       *string
			params                         []byte
			job, project, region           string
		)
		err := row.Scan(&t.ID, &t.RunID, &index, &name, &executorType, &t.Deps, &taskStatus, &attempts, &maxRetries,
			&timeout, &retryAt, &execName, &params, &t.WorkflowID, &job, &project, &region)
		return t, err
	})
	if err != nil || len(tasks) == 0 {
		return nil, err
	}
	// processing.rs:122-128: the workflows of the batch.
	wfs := map[uuid]bool{}
	var wfIDs []uuid
	for _, t := range tasks {
		if !wfs[t.WorkflowID] {
			wfs[t.WorkflowID] = true
			wfIDs = append(wfIDs, t.WorkflowID)
		}
	}
	if err := v.discard(ctx, v1WorkflowsByIDs, wfIDs); err != nil {
		return nil, err
	}
	// processing.rs:133-158: upstream outputs, one query per run with dependencies.
	deps := map[uuid]map[string]bool{}
	var runs []uuid
	for _, t := range tasks {
		if len(t.Deps) == 0 {
			continue
		}
		if deps[t.RunID] == nil {
			deps[t.RunID] = map[string]bool{}
			runs = append(runs, t.RunID)
		}
		for _, d := range t.Deps {
			deps[t.RunID][d] = true
		}
	}
	for _, run := range runs {
		names := make([]string, 0, len(deps[run]))
		for n := range deps[run] {
			names = append(names, n)
		}
		if err := v.discard(ctx, v1TaskOutputs, run, names); err != nil {
			return nil, err
		}
	}
	// processing.rs:204-213: every dispatched task with its execution name, one batch.
	ups := make([]v1Update, len(tasks))
	for i, t := range tasks {
		name := fmt.Sprintf("noop-%x", t.ID[:8])
		ups[i] = v1Update{id: t.ID, status: "dispatched", executionName: &name}
	}
	return tasks, v.batchUpdate(ctx, ups)
}

// discard runs a query and reads (and drops) its rows, as the original reads them into structs.
func (v *orkV1) discard(ctx context.Context, q string, args ...any) error {
	rows, err := v.pool.Query(ctx, v.sql(q), args...)
	if err != nil {
		return err
	}
	for rows.Next() {
		if _, err := rows.Values(); err != nil {
			rows.Close()
			return err
		}
	}
	return rows.Err()
}

// processStatusUpdates is process_status_updates (processing.rs:228-381) for updates
// without logs or outputs: retry metadata for the failures (one = ANY query), a reset
// per failure with retries left, the identity of each success and failure, the batch
// update, the dependency failures level by level, and the completion check per run.
// It returns the runs that finished.
func (v *orkV1) processStatusUpdates(ctx context.Context, updates []v1StatusUpdate) (int, error) {
	var failedIDs []uuid
	for _, u := range updates {
		if u.status == "failed" {
			failedIDs = append(failedIDs, u.id)
		}
	}
	type meta struct{ attempts, maxRetries int32 }
	retryMeta := map[uuid]meta{}
	if len(failedIDs) > 0 { // processing.rs:237-241
		rows, err := v.pool.Query(ctx, v.sql(v1RetryMeta), failedIDs)
		if err != nil {
			return 0, err
		}
		var id uuid
		var m meta
		if _, err := pgx.ForEachRow(rows, []any{&id, &m.attempts, &m.maxRetries}, func() error {
			retryMeta[id] = m
			return nil
		}); err != nil {
			return 0, err
		}
	}
	var taskUpdates []v1Update
	runsToCheck := map[uuid]bool{}
	var runOrder []uuid
	failedByRun := map[uuid][]string{}
	for _, u := range updates {
		if u.status == "failed" { // processing.rs:315-339
			m := retryMeta[u.id]
			if m.attempts < m.maxRetries {
				backoff := v1RetryBackoff(m.attempts + 1)
				errText := "retrying"
				if u.err != nil {
					errText = *u.err
				}
				retryAt := time.Now().Add(time.Duration(backoff) * time.Second)
				if _, err := v.pool.Exec(ctx, v.sql(v1ResetForRetry), "pending", retryAt, errText, u.id); err != nil {
					return 0, err
				}
				continue
			}
		}
		taskUpdates = append(taskUpdates, v1Update{id: u.id, status: u.status, errText: u.err}) // processing.rs:341
		if u.status == "success" || u.status == "failed" {                                      // processing.rs:343-349
			var runID uuid
			var name string
			if err := v.pool.QueryRow(ctx, v.sql(v1TaskIdentity), u.id).Scan(&runID, &name); err != nil {
				return 0, err
			}
			if !runsToCheck[runID] {
				runsToCheck[runID] = true
				runOrder = append(runOrder, runID)
			}
			if u.status == "failed" {
				failedByRun[runID] = append(failedByRun[runID], name)
			}
		}
	}
	if err := v.batchUpdate(ctx, taskUpdates); err != nil { // processing.rs:352-353
		return 0, err
	}
	for runID, names := range failedByRun { // processing.rs:360-374
		pending, seen := names, map[string]bool{}
		for len(pending) > 0 {
			rows, err := v.pool.Query(ctx, v.sql(v1FailDependents), "failed", "dependency failed", runID, "pending", "paused", pending)
			if err != nil {
				return 0, err
			}
			next, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return 0, err
			}
			pending = pending[:0:0]
			for _, n := range next {
				if !seen[n] {
					seen[n] = true
					pending = append(pending, n)
				}
			}
		}
	}
	finished := 0
	for _, runID := range runOrder { // processing.rs:376-378
		done, err := v.checkRunCompletion(ctx, runID)
		if err != nil {
			return 0, err
		}
		if done {
			finished++
		}
	}
	return finished, nil
}

// v1RetryBackoff is task_execution.rs:227-234.
func v1RetryBackoff(attempt int32) int64 {
	if attempt <= 1 {
		return 1
	}
	return min(int64(1)<<(min(attempt, 10)-1), 60)
}

// checkRunCompletion is processing.rs:419-440: the run's task counts, and its final
// status when every task has succeeded or failed.
func (v *orkV1) checkRunCompletion(ctx context.Context, runID uuid) (bool, error) {
	var total, completed, failed int64
	if err := v.pool.QueryRow(ctx, v.sql(v1RunStats), "success", "failed", runID).Scan(&total, &completed, &failed); err != nil {
		return false, err
	}
	if completed != total {
		return false, nil
	}
	status := "success"
	if failed > 0 {
		status = "failed"
	}
	return true, v.updateRunStatus(ctx, runID, status)
}

func (v *orkV1) updateRunStatus(ctx context.Context, runID uuid, status string) error {
	_, err := v.pool.Exec(ctx, v.sql(v1UpdateRun), status, nil, "running", "success", "failed", "cancelled", runID)
	return err
}

// createWorkflow stores a DAG as the workflow's compiled tasks (what `ork` writes
// into workflow_tasks when a workflow is created; not measured).
func (v *orkV1) createWorkflow(ctx context.Context, name string, specs []specV1) (uuid, error) {
	var id uuid
	if err := v.pool.QueryRow(ctx, v.sql(`insert into {ork}.workflows (name, job_name, project, region, executor_type)
		values ($1, 'bench-job', 'bench-project', 'local', 'dag') returning id`), name).Scan(&id); err != nil {
		return id, err
	}
	for i, s := range specs {
		if _, err := v.pool.Exec(ctx, v.sql(`insert into {ork}.workflow_tasks (workflow_id, task_index, task_name, executor_type, depends_on, params)
			values ($1, $2, $3, 'process', $4, $5)`), id, i, s.name, s.deps, s.params); err != nil {
			return id, err
		}
	}
	return id, nil
}

// specV1 is a task of a workflow's compiled DAG.
type specV1 struct {
	name   string
	deps   []string
	params map[string]any
}

// createRun is create_run_impl (runs.rs:24-43) without 013's snapshot lookup.
func (v *orkV1) createRun(ctx context.Context, wf uuid) error {
	return v.discard(ctx, v1CreateRun, wf, "pending", "bench")
}

// processPendingRuns is process_pending_runs (processing.rs:5-108) for runs of DAG
// workflows: every pending run, its workflows, their compiled tasks, and per run the
// tasks inserted one by one in a transaction, then the run marked running.
func (v *orkV1) processPendingRuns(ctx context.Context) (int, error) {
	rows, err := v.pool.Query(ctx, v.sql(v1PendingRuns), "pending")
	if err != nil {
		return 0, err
	}
	type run struct{ id, wf uuid }
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (run, error) {
		var r run
		vals, err := row.Values()
		if err != nil {
			return r, err
		}
		r.id, r.wf = vals[0].([16]byte), vals[1].([16]byte)
		return r, nil
	})
	if err != nil || len(runs) == 0 {
		return 0, err
	}
	var wfIDs []uuid
	seen := map[uuid]bool{}
	for _, r := range runs {
		if !seen[r.wf] {
			seen[r.wf] = true
			wfIDs = append(wfIDs, r.wf)
		}
	}
	var wfName string
	wfNames := map[uuid]string{}
	rows, err = v.pool.Query(ctx, v.sql(v1WorkflowsByIDs), wfIDs) // processing.rs:21
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			rows.Close()
			return 0, err
		}
		wfName = vals[1].(string)
		wfNames[vals[0].([16]byte)] = wfName
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	type wtask struct {
		index int32
		name  string
		typ   string
		deps  []string
		param map[string]any
	}
	specs := map[uuid][]wtask{}
	for _, wf := range wfIDs { // processing.rs:25-31
		rows, err := v.pool.Query(ctx, v.sql(v1WorkflowTasks), wf)
		if err != nil {
			return 0, err
		}
		ts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (wtask, error) {
			// id, workflow_id, task_index, task_name, executor_type, depends_on, params, created_at, signature
			var t wtask
			var id, wfID uuid
			var created, signature any
			return t, row.Scan(&id, &wfID, &t.index, &t.name, &t.typ, &t.deps, &t.param, &created, &signature)
		})
		if err != nil {
			return 0, err
		}
		specs[wf] = ts
	}
	for _, r := range runs { // processing.rs:33-105
		runText := fmt.Sprintf("%x-%x-%x-%x-%x", r.id[0:4], r.id[4:6], r.id[6:8], r.id[8:10], r.id[10:16])
		err := pgx.BeginFunc(ctx, v.pool, func(tx pgx.Tx) error { // build_run_tasks (task_execution.rs:236-282) + tasks.rs:40-55
			for _, t := range specs[r.wf] {
				params := map[string]any{"task_index": t.index, "task_name": t.name, "workflow_name": wfNames[r.wf], "run_id": runText}
				for k, val := range t.param {
					params[k] = val
				}
				var maxRetries int32
				var timeout *int32
				if n, ok := t.param["max_retries"].(float64); ok {
					maxRetries = int32(n)
				}
				if n, ok := t.param["timeout_seconds"].(float64); ok {
					timeout = new(int32(n))
				}
				if _, err := tx.Exec(ctx, v.sql(v1InsertTask), r.id, t.index, t.name, t.typ, t.deps, "pending", maxRetries, timeout, params); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		if err := v.updateRunStatus(ctx, r.id, "running"); err != nil {
			return 0, err
		}
	}
	return len(runs), nil
}

// loopOnce is one iteration of Scheduler::run (scheduler.rs:151-230) with instant
// executors: scheduled triggers, pending runs, pending tasks, the status updates the
// executors sent (from fail, the tasks that fail this attempt), and enforce_timeouts.
// It returns whether there was work, the tasks dispatched and the runs finished.
func (v *orkV1) loopOnce(ctx context.Context, batch int, fail func(v1Task) bool) (bool, []v1Task, int, error) {
	if err := v.discard(ctx, v1DueWorkflows); err != nil {
		return false, nil, 0, err
	}
	started, err := v.processPendingRuns(ctx)
	if err != nil {
		return false, nil, 0, err
	}
	tasks, err := v.dispatch(ctx, batch)
	if err != nil {
		return false, nil, 0, err
	}
	// The executors' channel (process.rs:205-213, 301-323): "running" for every task
	// as its process starts, drained first, then each outcome. (Drained together,
	// a failure's retry reset would be overwritten by the batch's "running":
	// processing.rs:323-341 resets at once, the batch update comes after.)
	finished := 0
	if len(tasks) > 0 {
		running := make([]v1StatusUpdate, len(tasks))
		outcomes := make([]v1StatusUpdate, len(tasks))
		for i, t := range tasks {
			running[i] = v1StatusUpdate{id: t.ID, status: "running"}
			outcomes[i] = v1StatusUpdate{id: t.ID, status: "success"}
			if fail != nil && fail(t) {
				msg := "exit status 1"
				outcomes[i] = v1StatusUpdate{id: t.ID, status: "failed", err: &msg}
			}
		}
		if _, err := v.processStatusUpdates(ctx, running); err != nil {
			return false, nil, 0, err
		}
		if finished, err = v.processStatusUpdates(ctx, outcomes); err != nil {
			return false, nil, 0, err
		}
	}
	if err := v.discard(ctx, v1RunningTasks, "running", "dispatched"); err != nil { // no task has a timeout: nothing more
		return false, nil, 0, err
	}
	return started > 0 || len(tasks) > 0, tasks, finished, nil
}

// cancelRun is cancel_run_impl (runs.rs:225-247).
func (v *orkV1) cancelRun(ctx context.Context, runID uuid) error {
	return pgx.BeginFunc(ctx, v.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, v.sql(v1CancelRun), "cancelled", runID, "success", "failed", "cancelled"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, v.sql(v1CancelRunTasks), "cancelled", runID, "pending", "dispatched", "running")
		return err
	})
}
