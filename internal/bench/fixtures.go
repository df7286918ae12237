package bench

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Fixtures write rows straight into an install's tables with INSERT … SELECT
// generate_series: a million tasks take seconds, where the Store's calls would take
// minutes. They write exactly what create_tasks would (unmet_deps, downstream,
// depends_on, run counters), so the hot paths see the rows they would see in
// production. The same shapes exist for ork-v1's tables (v1Fixture below).

// fixture addresses one orkstate install's tables.
type fixture struct {
	pool   *pgxpool.Pool
	schema string
	// aged: the install carries history that must stay as it is (dead rows included):
	// finish analyzes instead of vacuuming.
	aged bool
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
		       0, -- one dependency: readiness derived from its status, the row keeps 0
		       case when lvl < $5 - 1 then array[$1::bigint + (lvl + 1)::bigint * $2 + c] else '{}'::bigint[] end,
		       now() - $7::interval
		from generate_series(0, $5 - 1) lvl cross join generate_series(0, $2 - 1) c
		order by 1`
	if _, err := f.pool.Exec(ctx, f.sql(q), base, w, firstRun, perRun, links, first, age); err != nil {
		return 0, fmt.Errorf("fixture chains: %w", err)
	}
	return base, f.finish(ctx, base)
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
		       0, -- one dependency: readiness derived from its status, the row keeps 0
		       case when k = 0 then array(select $1::bigint + r::bigint * ($3 + 1) + j from generate_series(1, $3) j)
		            else '{}'::bigint[] end,
		       now() - $5::interval
		from generate_series(0, $6 - 1) r cross join generate_series(0, $3) k
		order by 1`
	if _, err := f.pool.Exec(ctx, f.sql(q), base, firstRun, children, root, age, runs); err != nil {
		return fmt.Errorf("fixture fans: %w", err)
	}
	return f.finish(ctx, base)
}

// finish moves the id sequence past the fixture's ids and refreshes statistics and
// the visibility map, as autovacuum would have on a table that grew over time.
func (f fixture) finish(ctx context.Context, base int64) error {
	if _, err := f.pool.Exec(ctx, f.sql(`select setval(pg_get_serial_sequence('{ork}.tasks', 'id'), (select max(id) from {ork}.tasks))`)); err != nil {
		return err
	}
	// Rows written directly bypass the functions: file them for the claim and the
	// sweeps as the functions would have (the rule of _queue_sync).
	if _, err := f.pool.Exec(ctx, f.sql(`select {ork}_api._queue_sync(array(select t.id from {ork}.tasks t where t.id >= $1))`), base); err != nil {
		return err
	}
	if f.aged {
		_, err := f.pool.Exec(ctx, f.sql(`analyze {ork}.tasks, {ork}.runs, {ork}.task_queue`))
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

// v1Fixture writes the same shapes into ork-v1's tables: UUID keys from
// gen_random_uuid(), the params build_run_tasks gives a task, no counters (the
// original finds ready tasks by re-checking dependencies on every poll).
type v1Fixture struct{ v *orkV1 }

func (v *orkV1) fixture() v1Fixture { return v1Fixture{v} }

// runs inserts n running runs and returns their ids in key order.
func (f v1Fixture) runs(ctx context.Context, n int) ([]uuid, error) {
	v := f.v
	var wf uuid
	if err := v.pool.QueryRow(ctx, v.sql(`
		insert into {ork}.workflows (name, job_name, project, region, executor_type)
		values ('bench', 'bench-job', 'bench-project', 'local', 'dag')
		on conflict (name) do update set job_name = excluded.job_name
		returning id`)).Scan(&wf); err != nil {
		return nil, err
	}
	rows, err := v.pool.Query(ctx, v.sql(`
		insert into {ork}.runs (workflow_id, status, triggered_by, started_at)
		select $1, 'running', 'bench', now() from generate_series(1, $2)
		returning id`), wf, n)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid])
	slices.SortFunc(ids, func(a, b uuid) int { return bytes.Compare(a[:], b[:]) })
	return ids, err
}

// chains is fixture.chains for ork-v1. It returns the task ids level by level, each
// level in the same chain order (run, then chain within the run).
func (f v1Fixture) chains(ctx context.Context, runs, perRun, links int, first string, age time.Duration, wantIDs bool) ([][]uuid, error) {
	v := f.v
	runIDs, err := f.runs(ctx, runs)
	if err != nil {
		return nil, fmt.Errorf("fixture runs: %w", err)
	}
	if _, err := v.pool.Exec(ctx, v.sql(`
		insert into {ork}.tasks (run_id, task_index, task_name, executor_type, depends_on, status, attempts, params, created_at)
		select r.id, lvl * $2 + c, 'c' || c || '_' || lvl, 'process',
		       case when lvl = 0 then '{}'::text[] else array['c' || c || '_' || (lvl - 1)] end,
		       case when lvl = 0 then $4 else 'pending' end,
		       case when lvl = 0 and $4 <> 'pending' then 1 else 0 end,
		       jsonb_build_object('task_index', lvl * $2 + c, 'task_name', 'c' || c || '_' || lvl,
		                          'workflow_name', 'bench', 'run_id', r.id::text),
		       now() - $5::interval
		from generate_series(0, $3 - 1) lvl cross join unnest($1::uuid[]) with ordinality r(id, rn)
		     cross join generate_series(0, $2 - 1) c
		order by lvl, r.rn, c`), runIDs, perRun, links, first, age); err != nil {
		return nil, fmt.Errorf("fixture chains: %w", err)
	}
	if err := f.finish(ctx); err != nil || !wantIDs {
		return nil, err
	}
	rows, err := v.pool.Query(ctx, v.sql(`
		select t.id from {ork}.tasks t join unnest($1::uuid[]) with ordinality r(id, rn) on r.id = t.run_id
		order by t.task_index / $2, r.rn, t.task_index % $2`), runIDs, perRun)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid])
	if err != nil {
		return nil, err
	}
	w := runs * perRun
	levels := make([][]uuid, links)
	for l := range levels {
		levels[l] = ids[l*w : (l+1)*w]
	}
	return levels, nil
}

// fans is fixture.fans for ork-v1.
func (f v1Fixture) fans(ctx context.Context, runs, children int, root string, age time.Duration) error {
	v := f.v
	runIDs, err := f.runs(ctx, runs)
	if err != nil {
		return fmt.Errorf("fixture runs: %w", err)
	}
	if _, err := v.pool.Exec(ctx, v.sql(`
		insert into {ork}.tasks (run_id, task_index, task_name, executor_type, depends_on, status, attempts, params, created_at)
		select r.id, k, case when k = 0 then 'root' else 'child_' || k end, 'process',
		       case when k = 0 then '{}'::text[] else array['root'] end,
		       case when k = 0 then $3 else 'pending' end,
		       case when k = 0 and $3 <> 'pending' then 1 else 0 end,
		       jsonb_build_object('task_index', k, 'task_name', case when k = 0 then 'root' else 'child_' || k end,
		                          'workflow_name', 'bench', 'run_id', r.id::text),
		       now() - $4::interval
		from unnest($1::uuid[]) with ordinality r(id, rn) cross join generate_series(0, $2) k
		order by r.rn, k`), runIDs, children, root, age); err != nil {
		return fmt.Errorf("fixture fans: %w", err)
	}
	return f.finish(ctx)
}

// finish refreshes statistics and the visibility map, as for an orkstate fixture.
func (f v1Fixture) finish(ctx context.Context) error {
	_, err := f.v.pool.Exec(ctx, f.v.sql(`vacuum analyze {ork}.tasks, {ork}.runs`))
	return err
}
