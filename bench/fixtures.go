package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Fixtures write rows straight into an install's tables with INSERT … SELECT
// generate_series: a million tasks take seconds, where the Store's calls would take
// minutes. They write exactly what create_tasks would (unmet_deps, downstream,
// depends_on, run counters), so the hot paths see the rows they would see in
// production. The same shapes exist for ork-v1's tables (orkv1.go).

// fixture addresses one schema's tables; v1 selects ork-v1's columns.
type fixture struct {
	pool   *pgxpool.Pool
	schema string
	v1     bool
}

func (f fixture) sql(q string) string { return strings.ReplaceAll(q, "{ork}", f.schema) }

// workflow returns the id of the bench workflow, creating it.
func (f fixture) workflow(ctx context.Context) (int64, error) {
	var id int64
	err := f.pool.QueryRow(ctx, f.sql(`
		insert into {ork}.workflows (name, job_name, project, region, executor_type)
		values ('bench', 'bench-job', 'bench-project', 'local', 'noop')
		on conflict (name) do update set job_name = excluded.job_name
		returning id`)).Scan(&id)
	return id, err
}

// runs inserts n running runs of tasksPerRun tasks each and returns the first id
// (they are consecutive: one statement, fresh or quiet schema).
func (f fixture) runs(ctx context.Context, n, tasksPerRun int) (int64, error) {
	wf, err := f.workflow(ctx)
	if err != nil {
		return 0, err
	}
	q := `with ins as (
			insert into {ork}.runs (workflow_id, status, triggered_by, tasks_total, started_at)
			select $1, 'running', 'bench', $3, now() from generate_series(1, $2)
			returning id)
		select min(id) from ins`
	args := []any{wf, n, tasksPerRun}
	if f.v1 {
		// ork-v1 keeps no counters: completion counts the run's tasks.
		q = `with ins as (
			insert into {ork}.runs (workflow_id, status, triggered_by, started_at)
			select $1, 'running', 'bench', now() from generate_series(1, $2)
			returning id)
		select min(id) from ins`
		args = args[:2]
	}
	var first int64
	err = f.pool.QueryRow(ctx, f.sql(q), args...).Scan(&first)
	return first, err
}

// nextTaskID is the id the next fixture task gets.
func (f fixture) nextTaskID(ctx context.Context) (int64, error) {
	var id int64
	err := f.pool.QueryRow(ctx, f.sql(`select coalesce(max(id), 0) + 1 from {ork}.tasks`)).Scan(&id)
	return id, err
}

// chains creates runs*perRun chains of length links. Ids are level-major: the
// tasks of level l are the contiguous ids first+l*W … first+l*W+W-1 (W = runs*perRun),
// so a batch of W consecutive ids is one level and each success unblocks one task of
// the next. Level-0 tasks get status first (pending: ready; running: reported later).
// It returns the first task id.
func (f fixture) chains(ctx context.Context, runs, perRun, links int, first string, age time.Duration) (int64, error) {
	firstRun, err := f.runs(ctx, runs, perRun*links)
	if err != nil {
		return 0, fmt.Errorf("fixture runs: %w", err)
	}
	base, err := f.nextTaskID(ctx)
	if err != nil {
		return 0, err
	}
	w := runs * perRun
	q := `insert into {ork}.tasks (id, run_id, task_index, task_name, executor_type, depends_on, status,
			attempts, unmet_deps, downstream, created_at)
		overriding system value
		select $1::bigint + lvl::bigint * $2 + c,
		       $3::bigint + c / $4,
		       lvl * $4 + c % $4,
		       'c' || (c % $4) || '_' || lvl,
		       'noop',
		       case when lvl = 0 then '{}'::text[] else array['c' || (c % $4) || '_' || (lvl - 1)] end,
		       case when lvl = 0 then $6 else 'pending' end,
		       case when lvl = 0 and $6 <> 'pending' then 1 else 0 end,
		       case when lvl = 0 then 0 else 1 end,
		       case when lvl < $5 - 1 then array[$1::bigint + (lvl + 1)::bigint * $2 + c] else '{}'::bigint[] end,
		       now() - $7::interval
		from generate_series(0, $5 - 1) lvl cross join generate_series(0, $2 - 1) c
		order by 1`
	if f.v1 {
		q = `insert into {ork}.tasks (id, run_id, task_index, task_name, executor_type, depends_on, status,
				attempts, created_at)
			select $1::bigint + lvl::bigint * $2 + c,
			       $3::bigint + c / $4,
			       lvl * $4 + c % $4,
			       'c' || (c % $4) || '_' || lvl,
			       'noop',
			       case when lvl = 0 then '{}'::text[] else array['c' || (c % $4) || '_' || (lvl - 1)] end,
			       case when lvl = 0 then $6 else 'pending' end,
			       case when lvl = 0 and $6 <> 'pending' then 1 else 0 end,
			       now() - $7::interval
			from generate_series(0, $5 - 1) lvl cross join generate_series(0, $2 - 1) c
			order by 1`
	}
	if _, err := f.pool.Exec(ctx, f.sql(q), base, w, firstRun, perRun, links, first, age); err != nil {
		return 0, fmt.Errorf("fixture chains: %w", err)
	}
	return base, f.finish(ctx)
}

// fans creates runs runs of one root task (status root) and children tasks that
// depend on it. With a root that has not succeeded, the children are blocked.
func (f fixture) fans(ctx context.Context, runs, children int, root string, age time.Duration) error {
	firstRun, err := f.runs(ctx, runs, children+1)
	if err != nil {
		return fmt.Errorf("fixture runs: %w", err)
	}
	base, err := f.nextTaskID(ctx)
	if err != nil {
		return err
	}
	q := `insert into {ork}.tasks (id, run_id, task_index, task_name, executor_type, depends_on, status,
			attempts, unmet_deps, downstream, created_at)
		overriding system value
		select $1::bigint + r::bigint * ($3 + 1) + k,
		       $2::bigint + r,
		       k,
		       case when k = 0 then 'root' else 'child_' || k end,
		       'noop',
		       case when k = 0 then '{}'::text[] else array['root'] end,
		       case when k = 0 then $4 else 'pending' end,
		       case when k = 0 and $4 <> 'pending' then 1 else 0 end,
		       case when k = 0 then 0 else 1 end,
		       case when k = 0 then array(select $1::bigint + r::bigint * ($3 + 1) + j from generate_series(1, $3) j)
		            else '{}'::bigint[] end,
		       now() - $5::interval
		from generate_series(0, $6 - 1) r cross join generate_series(0, $3) k
		order by 1`
	if f.v1 {
		q = `insert into {ork}.tasks (id, run_id, task_index, task_name, executor_type, depends_on, status,
				attempts, created_at)
			select $1::bigint + r::bigint * ($3 + 1) + k,
			       $2::bigint + r,
			       k,
			       case when k = 0 then 'root' else 'child_' || k end,
			       'noop',
			       case when k = 0 then '{}'::text[] else array['root'] end,
			       case when k = 0 then $4 else 'pending' end,
			       case when k = 0 and $4 <> 'pending' then 1 else 0 end,
			       now() - $5::interval
			from generate_series(0, $6 - 1) r cross join generate_series(0, $3) k
			order by 1`
	}
	if _, err := f.pool.Exec(ctx, f.sql(q), base, firstRun, children, root, age, runs); err != nil {
		return fmt.Errorf("fixture fans: %w", err)
	}
	return f.finish(ctx)
}

// finish moves the id sequence past the fixture's ids and refreshes statistics and
// the visibility map, as autovacuum would have on a table that grew over time.
func (f fixture) finish(ctx context.Context) error {
	if _, err := f.pool.Exec(ctx, f.sql(`select setval(pg_get_serial_sequence('{ork}.tasks', 'id'), (select max(id) from {ork}.tasks))`)); err != nil {
		return err
	}
	if f.v1 {
		_, err := f.pool.Exec(ctx, f.sql(`vacuum analyze {ork}.tasks, {ork}.runs`))
		return err
	}
	// Rows written directly bypass the functions: file them for the claim and the
	// sweeps as the functions would have (the rule of _queue_sync).
	if _, err := f.pool.Exec(ctx, f.sql(`select {ork}_api._queue_sync(array(select t.id from {ork}.tasks t))`)); err != nil {
		return err
	}
	_, err := f.pool.Exec(ctx, f.sql(`vacuum analyze {ork}.tasks, {ork}.runs, {ork}.task_queue`))
	return err
}

// idRange returns the ids first … first+n-1.
func idRange(first int64, n int) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = first + int64(i)
	}
	return ids
}
