package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate"
)

// orkV1 is the baseline: the algorithm of the original store (Ork's ork-state
// PostgresDatabase, which orkstate replaces: README.md, "Benchmarks"), written in Go against tables shaped
// like its migrations, in a schema of its own. What it does, on purpose:
//
//   - status changes: one UPDATE per row, in a loop, inside one transaction;
//   - dispatch: a plain SELECT (no FOR UPDATE SKIP LOCKED) that re-checks every
//     dependency of every pending task on each poll, then one UPDATE per task to
//     dispatched and one query per task for its upstream outputs;
//   - after each status report, the follow-up queries one by one: retry metadata,
//     task identity, the dependency-failure loop (on failures), run stats, run status;
//   - run start: the DAG's tasks inserted one INSERT at a time.
//
// Ids are bigint here (the original used UUIDs), which only flatters it.
type orkV1 struct {
	pool   *pgxpool.Pool
	schema string
}

const orkV1Schema = `
create schema {ork};
create table {ork}.workflows (
    id bigserial primary key,
    name text not null unique,
    description text,
    job_name text not null default '',
    region text not null default '',
    project text not null default '',
    executor_type text not null default '',
    task_params jsonb,
    created_at timestamptz not null default now()
);
create table {ork}.workflow_tasks (
    id bigserial primary key,
    workflow_id bigint not null references {ork}.workflows on delete cascade,
    task_index integer not null,
    task_name text not null,
    executor_type text not null default '',
    depends_on text[] not null default '{}',
    params jsonb,
    unique (workflow_id, task_index)
);
create table {ork}.runs (
    id bigserial primary key,
    workflow_id bigint not null references {ork}.workflows on delete cascade,
    status text not null default 'pending',
    triggered_by text not null default '',
    error text,
    created_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz
);
create table {ork}.tasks (
    id bigserial primary key,
    run_id bigint not null references {ork}.runs on delete cascade,
    task_index integer not null,
    task_name text not null,
    executor_type text not null default '',
    depends_on text[] not null default '{}',
    status text not null default 'pending',
    execution_name text,
    params jsonb,
    output jsonb,
    error text,
    logs text,
    attempts integer not null default 0,
    max_retries integer not null default 0,
    timeout_seconds integer,
    retry_at timestamptz,
    created_at timestamptz not null default now(),
    dispatched_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz
);
-- the indexes of its 003_add_indexes, plus the lookups its follow-ups need
create index on {ork}.runs (status);
create index on {ork}.runs (workflow_id);
create index on {ork}.tasks (run_id);
create index on {ork}.tasks (status, created_at);
create index on {ork}.tasks (run_id, task_name);
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

func (v *orkV1) fixture() fixture { return fixture{pool: v.pool, schema: v.schema, v1: true} }

// v1Task is what the original's dispatch returned for a task.
type v1Task struct {
	ID      int64
	RunID   int64
	Name    string
	Deps    []string
	Attempt int
}

// dispatch is the original's poll: the pending tasks whose every dependency has
// succeeded (re-checked for every pending task, every time), oldest first, without
// locking; each is then marked dispatched by its own UPDATE in one transaction, and
// its upstream outputs are read by one query each.
func (v *orkV1) dispatch(ctx context.Context, limit int) ([]v1Task, error) {
	rows, err := v.pool.Query(ctx, v.sql(`
		select t.id, t.run_id, t.task_name, t.depends_on, t.attempts
		from {ork}.tasks t
		join {ork}.runs r on r.id = t.run_id
		join {ork}.workflows w on w.id = r.workflow_id
		where t.status = 'pending' and r.status = 'running'
		  and (t.retry_at is null or t.retry_at <= now())
		  and not exists (
		      select 1 from unnest(t.depends_on) d(name)
		      where not exists (
		          select 1 from {ork}.tasks u
		          where u.run_id = t.run_id and u.task_name = d.name and u.status = 'success'))
		order by t.created_at
		limit $1`), limit)
	if err != nil {
		return nil, err
	}
	tasks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (v1Task, error) {
		var t v1Task
		err := row.Scan(&t.ID, &t.RunID, &t.Name, &t.Deps, &t.Attempt)
		return t, err
	})
	if err != nil || len(tasks) == 0 {
		return nil, err
	}
	tx, err := v.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for i := range tasks {
		if _, err := tx.Exec(ctx, v.sql(`update {ork}.tasks set status = 'dispatched', dispatched_at = now(),
				attempts = attempts + 1 where id = $1`), tasks[i].ID); err != nil {
			return nil, err
		}
		tasks[i].Attempt++
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	for _, t := range tasks {
		if len(t.Deps) == 0 {
			continue
		}
		rows, err := v.pool.Query(ctx, v.sql(`select task_name, output from {ork}.tasks where run_id = $1 and task_name = any($2)`), t.RunID, t.Deps)
		if err != nil {
			return nil, err
		}
		rows.Close()
		if rows.Err() != nil {
			return nil, rows.Err()
		}
	}
	return tasks, nil
}

// report is the original's batch status update and what its scheduler did after it.
func (v *orkV1) report(ctx context.Context, ids []int64, status orkstate.TaskStatus) error {
	tx, err := v.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for _, id := range ids {
		if _, err := tx.Exec(ctx, v.sql(`
			update {ork}.tasks set status = $2,
				started_at = case when $2 = 'running' then now() else started_at end,
				finished_at = case when $2 in ('success', 'failed', 'cancelled') then now() else finished_at end
			where id = $1 and status not in ('success', 'cancelled')`), id, string(status)); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	for _, id := range ids {
		if err := v.followUp(ctx, id, status); err != nil {
			return err
		}
	}
	return nil
}

// followUp is what the original's scheduler asked after each status report, one query at a time.
func (v *orkV1) followUp(ctx context.Context, id int64, status orkstate.TaskStatus) error {
	var attempts, maxRetries int
	var timeout *int
	var retryAt any
	if err := v.pool.QueryRow(ctx, v.sql(`select attempts, max_retries, timeout_seconds, retry_at from {ork}.tasks where id = $1`), id).
		Scan(&attempts, &maxRetries, &timeout, &retryAt); err != nil {
		return fmt.Errorf("retry metadata: %w", err)
	}
	var runID, wfID int64
	var taskIndex int
	var taskName, wfName string
	if err := v.pool.QueryRow(ctx, v.sql(`
		select t.run_id, t.task_index, t.task_name, r.workflow_id, w.name
		from {ork}.tasks t join {ork}.runs r on r.id = t.run_id join {ork}.workflows w on w.id = r.workflow_id
		where t.id = $1`), id).Scan(&runID, &taskIndex, &taskName, &wfID, &wfName); err != nil {
		return fmt.Errorf("task identity: %w", err)
	}
	if status == orkstate.TaskFailed && attempts > maxRetries {
		// the dependency-failure loop: find dependents by name, fail them one by one, recurse
		queue := []string{taskName}
		for len(queue) > 0 {
			name := queue[0]
			queue = queue[1:]
			rows, err := v.pool.Query(ctx, v.sql(`select id, task_name from {ork}.tasks
				where run_id = $1 and $2 = any(depends_on) and status not in ('success', 'failed', 'cancelled')`), runID, name)
			if err != nil {
				return err
			}
			type dep struct {
				id   int64
				name string
			}
			deps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (dep, error) {
				var d dep
				return d, row.Scan(&d.id, &d.name)
			})
			if err != nil {
				return err
			}
			for _, d := range deps {
				if _, err := v.pool.Exec(ctx, v.sql(`update {ork}.tasks set status = 'failed', error = 'dependency failed',
					finished_at = now() where id = $1`), d.id); err != nil {
					return err
				}
				queue = append(queue, d.name)
			}
		}
	}
	var total, done, failed int
	if err := v.pool.QueryRow(ctx, v.sql(`
		select count(*), count(*) filter (where status in ('success', 'failed', 'cancelled')),
		       count(*) filter (where status = 'failed')
		from {ork}.tasks where run_id = $1`), runID).Scan(&total, &done, &failed); err != nil {
		return fmt.Errorf("run stats: %w", err)
	}
	var runStatus string
	if err := v.pool.QueryRow(ctx, v.sql(`select status from {ork}.runs where id = $1`), runID).Scan(&runStatus); err != nil {
		return fmt.Errorf("run status: %w", err)
	}
	if total > 0 && done == total && runStatus == "running" {
		final := "success"
		if failed > 0 {
			final = "failed"
		}
		if _, err := v.pool.Exec(ctx, v.sql(`update {ork}.runs set status = $2, finished_at = now() where id = $1`), runID, final); err != nil {
			return fmt.Errorf("run status: %w", err)
		}
	}
	return nil
}

// createWorkflow stores a DAG as the workflow's compiled tasks.
func (v *orkV1) createWorkflow(ctx context.Context, name string, specs []orkstate.TaskSpec) (int64, error) {
	var id int64
	if err := v.pool.QueryRow(ctx, v.sql(`insert into {ork}.workflows (name, job_name, executor_type) values ($1, 'bench-job', 'noop') returning id`), name).Scan(&id); err != nil {
		return 0, err
	}
	for i, s := range specs {
		deps := s.DependsOn
		if deps == nil {
			deps = []string{}
		}
		if _, err := v.pool.Exec(ctx, v.sql(`insert into {ork}.workflow_tasks (workflow_id, task_index, task_name, executor_type, depends_on)
			values ($1, $2, $3, $4, $5)`), id, i, s.Name, s.ExecutorType, deps); err != nil {
			return 0, err
		}
	}
	return id, nil
}

// startPendingRuns is the original's run start: pending runs, oldest first, read
// without locking; for each, the compiled tasks inserted one by one in a
// transaction and the run marked running. It returns how many runs it started.
func (v *orkV1) startPendingRuns(ctx context.Context, limit int) (int, error) {
	rows, err := v.pool.Query(ctx, v.sql(`select id, workflow_id from {ork}.runs where status = 'pending' order by created_at limit $1`), limit)
	if err != nil {
		return 0, err
	}
	type run struct{ id, wf int64 }
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (run, error) {
		var r run
		return r, row.Scan(&r.id, &r.wf)
	})
	if err != nil {
		return 0, err
	}
	for _, r := range runs {
		rows, err := v.pool.Query(ctx, v.sql(`select task_index, task_name, executor_type, depends_on, params
			from {ork}.workflow_tasks where workflow_id = $1 order by task_index`), r.wf)
		if err != nil {
			return 0, err
		}
		type spec struct {
			index     int
			name, typ string
			deps      []string
			params    json.RawMessage
		}
		specs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (spec, error) {
			var s spec
			return s, row.Scan(&s.index, &s.name, &s.typ, &s.deps, &s.params)
		})
		if err != nil {
			return 0, err
		}
		err = pgx.BeginFunc(ctx, v.pool, func(tx pgx.Tx) error {
			// A compare-and-set on the status (kinder than the original) keeps two
			// schedulers from creating one run's tasks twice.
			tag, err := tx.Exec(ctx, v.sql(`update {ork}.runs set status = 'running', started_at = now()
				where id = $1 and status = 'pending'`), r.id)
			if err != nil || tag.RowsAffected() == 0 {
				return err
			}
			for _, s := range specs {
				if _, err := tx.Exec(ctx, v.sql(`insert into {ork}.tasks (run_id, task_index, task_name, executor_type, depends_on, params)
					values ($1, $2, $3, $4, $5, $6)`), r.id, s.index, s.name, s.typ, s.deps, s.params); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return len(runs), nil
}
