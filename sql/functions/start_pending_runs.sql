-- _run_task_specs is the DAG a run starts with, as create_tasks specs: the run's
-- snapshot, else the workflow's compiled tasks, else Ork's legacy count-based tasks
-- (task_params.task_count, default 3, named task_<i>, the workflow's executor type, each
-- with its own params {"task_index": i, "run_id": …, "workflow_name": …} as in the
-- original). A workflow of executor type 'dag' has no legacy form: without a snapshot
-- or compiled tasks its run fails (OK422 naming what is missing), as does a task_count
-- outside 0 … 100,000 (MaxTaskCount).
create function {{.schema}}_api._run_task_specs(p_run_id bigint)
returns jsonb
language plpgsql
stable
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
    v_snapshot bigint;
    v_workflow bigint;
    v_name text;
    v_executor text;
    v_params jsonb;
    v_count numeric;
    v_specs jsonb;
begin
    select r.snapshot_id, r.workflow_id, w.name, w.executor_type, w.task_params
    into v_snapshot, v_workflow, v_name, v_executor, v_params
    from runs r join workflows w on w.id = r.workflow_id
    where r.id = p_run_id;
    -- A snapshot or a compiled DAG that exists but is empty is used as it is (and the
    -- run then fails with "run has no tasks"); only their absence falls through.
    if v_snapshot is not null then
        -- A snapshot's tasks_json is already in create_tasks' form (name for task_name,
        -- the position for task_index), so it is passed through, not rebuilt.
        return coalesce((select s.tasks_json from workflow_snapshots s where s.id = v_snapshot), '[]'::jsonb);
    end if;
    -- No params stays no params (SQL NULL), not the JSON null jsonb_build_object makes of it.
    select jsonb_agg(jsonb_build_object(
               'task_index', wt.task_index, 'task_name', wt.task_name, 'executor_type', wt.executor_type,
               'depends_on', to_jsonb(wt.depends_on),
               'max_retries', wt.max_retries, 'timeout_seconds', wt.timeout_seconds,
               'priority', wt.priority, 'concurrency_key', wt.concurrency_key)
           || case when wt.params is null then '{}'::jsonb else jsonb_build_object('params', wt.params) end
           order by wt.task_index)
    into v_specs
    from workflow_tasks wt where wt.workflow_id = v_workflow;
    if v_specs is not null then
        return v_specs;
    end if;
    if v_executor = 'dag' then
        raise exception using errcode = 'OK422', column = 'executor_type',
            message = format('workflow %s has executor type dag but no compiled tasks or snapshot', to_json(v_name));
    end if;
    v_count := case when jsonb_typeof(v_params->'task_count') = 'number' then (v_params->>'task_count')::numeric end;
    if v_count is null then
        v_count := 3;
    elsif v_count < -0.5 or v_count >= 100000.5 then
        raise exception using errcode = 'OK422', column = 'task_params.task_count',
            message = format('task_params.task_count must be between 0 and 100000, got %s', v_params->>'task_count');
    end if;
    return coalesce((select jsonb_agg(jsonb_build_object(
                'task_index', i, 'task_name', 'task_' || i, 'executor_type', v_executor, 'depends_on', '[]'::jsonb,
                'params', jsonb_build_object('task_index', i, 'run_id', p_run_id, 'workflow_name', v_name)) order by i)
            from generate_series(0, round(v_count)::integer - 1) i), '[]'::jsonb);
end
$$;

-- _compile_snapshot stores the tasks a run just created from snapshot p_snapshot_id as
-- the snapshot's compiled rows (snapshot_tasks): position (id order: ids are drawn in
-- spec order), the task's columns, its unmet-dependency count (of a run that just
-- started: every dependency, or 0 for one, derived) and its dependents by position. Two runs compiling one snapshot at once write the same rows; the second
-- insert does nothing.
create function {{.schema}}_api._compile_snapshot(p_snapshot_id bigint, p_run_id bigint)
returns void
language sql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
    with m as (
        select t.*, row_number() over (order by t.id)::integer as pos,
               coalesce(n.unmet, t.unmet_deps) as unmet  -- a count apart (readiness.sql) or on the row
        from tasks t
        left join task_deps_unmet n on n.task_id = t.id
        where t.run_id = p_run_id
    )
    insert into snapshot_tasks (snapshot_id, pos, task_index, task_name, executor_type, depends_on, params,
                                max_retries, timeout_seconds, unmet_deps, downstream_pos,
                                priority, concurrency_key)
    select p_snapshot_id, m.pos, m.task_index, m.task_name, m.executor_type, m.depends_on, m.params,
           m.max_retries, m.timeout_seconds, m.unmet,
           array(select d_m.pos from unnest(m.downstream) with ordinality as d(id, o)
                 join m as d_m on d_m.id = d.id order by d.o),
           m.priority_override, m.concurrency_key
    from m
    on conflict (snapshot_id, pos) do nothing
$$;

-- _create_compiled_tasks creates the tasks of a run that has none from its snapshot's
-- compiled rows (see _compile_snapshot): one insert, ids drawn in position order, each
-- downstream array mapped from positions to the new ids. Returns how many it created.
create function {{.schema}}_api._create_compiled_tasks(p_run_id bigint, p_snapshot_id bigint)
returns integer
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
    v_ids bigint[];
    v_inserted integer;
    v_ready boolean;
    v_wf_priority smallint;
    -- the sequence is looked up once: per row, the lookup cost as much as the insert
    v_seq regclass := pg_get_serial_sequence('{{.schema}}.tasks', 'id')::regclass;
begin
    select w.priority into v_wf_priority from runs r join workflows w on w.id = r.workflow_id where r.id = p_run_id;
    v_ids := array(select nextval(v_seq) from snapshot_tasks c where c.snapshot_id = p_snapshot_id order by c.pos);
    with ins as (
        insert into tasks (id, run_id, task_index, task_name, executor_type, depends_on, status, params,
                           max_retries, timeout_seconds, unmet_deps, downstream,
                           priority, priority_override, concurrency_key)
        overriding system value
        select v_ids[c.pos], p_run_id, c.task_index, c.task_name, c.executor_type, c.depends_on, 'pending', c.params,
               c.max_retries, c.timeout_seconds,
               -- several dependencies: counted apart (below; readiness.sql)
               case when cardinality(c.depends_on) >= 2 then 0 else c.unmet_deps end,
               array(select v_ids[d] from unnest(c.downstream_pos) as d),
               coalesce(c.priority, v_wf_priority), c.priority, c.concurrency_key
        from snapshot_tasks c
        where c.snapshot_id = p_snapshot_id
        order by c.task_index
        returning tasks.id, tasks.unmet_deps, tasks.depends_on, tasks.executor_type, tasks.priority
    ), apart as (
        insert into task_deps_unmet (task_id, unmet)
        select v_ids[c.pos], c.unmet_deps from snapshot_tasks c
        where c.snapshot_id = p_snapshot_id and cardinality(c.depends_on) >= 2 and c.unmet_deps > 0
        order by 1
    ), queued as (
        -- a new run's ready tasks are those without dependencies (the others keep
        -- unmet_deps 0: their readiness is derived or counted apart, readiness.sql)
        insert into task_queue (task_id, executor_type, priority)
        select ins.id, ins.executor_type, ins.priority from ins
        where ins.unmet_deps = 0 and cardinality(ins.depends_on) = 0
        returning 1
    )
    select (select count(*) from ins), exists (select 1 from queued)
    into v_inserted, v_ready;

    perform _place_run_tasks(p_run_id);
    perform _tasks_added(p_run_id, v_inserted, v_ready);
    return v_inserted;
end
$$;

-- _start_run creates the tasks of a locked pending run and marks it running; a run
-- whose DAG is invalid (unknown dependency, cycle, no tasks, a name or count over its
-- bound, a dag workflow without a DAG) fails with an error naming why. Returns the run's status, how many tasks it created and the error.
-- A run of a snapshot that an earlier run compiled takes the compiled path; the first
-- run of a snapshot goes through _create_tasks (which checks the DAG) and compiles it.
create function {{.schema}}_api._start_run(p_run_id bigint, out status text, out tasks_created integer, out error text)
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
    v_snapshot bigint;
    v_fresh boolean;
    v_specs jsonb;
begin
    select r.snapshot_id, not exists (select 1 from tasks t where t.run_id = r.id)
    into v_snapshot, v_fresh
    from runs r where r.id = p_run_id;
    if v_snapshot is not null and v_fresh
       and exists (select 1 from snapshot_tasks c where c.snapshot_id = v_snapshot) then
        tasks_created := _create_compiled_tasks(p_run_id, v_snapshot);
        status := 'running';
        return;
    end if;
    -- Everything that reads the run's DAG is inside the block: a bad run fails alone
    -- with its reason, and never blocks the runs behind it (issue 11 item 6).
    begin
        v_specs := _run_task_specs(p_run_id);
        if jsonb_array_length(v_specs) = 0 then
            raise exception using errcode = 'OK422', message = 'run has no tasks';
        end if;
        tasks_created := _create_tasks(p_run_id, v_specs);
        if v_snapshot is not null and v_fresh and tasks_created = jsonb_array_length(v_specs) then
            perform _compile_snapshot(v_snapshot, p_run_id);
        end if;
        -- create_tasks starts the run when it inserts; this covers a run whose tasks all existed.
        update runs r set status = 'running', started_at = coalesce(r.started_at, now())
        where r.id = p_run_id and r.status = 'pending';
        status := 'running';
    -- OK422 is a DAG or spec that create_tasks refused with a reason. Data exceptions
    -- and program limits (an index row too big, a number out of range) are a backstop
    -- for stored data that predates a check: they fail this run, not the whole call.
    exception when sqlstate 'OK422' or data_exception or program_limit_exceeded then
        update runs r set status = 'failed', error = sqlerrm, finished_at = now(), started_at = now()
        where r.id = p_run_id;
        status := 'failed'; tasks_created := 0; error := sqlerrm;
        perform _notify_run_finished(p_run_id, 'failed');
    end;
end
$$;

-- start_run starts one pending run now (see start_pending_runs). OK404 for an unknown
-- run, OK409 for a run that is not pending.
create function {{.schema}}_api.start_run(p_run_id bigint, out status text, out tasks_created integer, out error text)
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
    v_status text := _lock_run(p_run_id);
begin
    if v_status <> 'pending' then
        raise exception using errcode = 'OK409', message = format('run %s is %s, not pending', p_run_id, v_status);
    end if;
    select s.status, s.tasks_created, s.error into status, tasks_created, error from _start_run(p_run_id) s;
end
$$;

-- start_pending_runs claims up to p_limit pending runs, oldest first (SKIP LOCKED, so
-- two schedulers never start one run twice), creates their tasks and marks them running.
-- A workflow's max_active_runs leaves its runs pending while that many of its runs are
-- running or paused (they start, in order, as runs finish).
-- A run whose DAG is invalid (unknown dependency, cycle, no tasks) fails with an error
-- naming why. Returns one row per run: run_id, status, tasks_created, error.
create function {{.schema}}_api.start_pending_runs(p_limit integer)
returns table (run_id bigint, status text, tasks_created integer, error text)
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
    v_run record;
    v_max integer;
    v_started integer := 0;
begin
    perform _check_limit(p_limit);
    -- No LIMIT: runs of a workflow at its max_active_runs are passed over (and stay
    -- locked, so racing callers pass them too); the loop ends after p_limit starts.
    for v_run in
        select r.id, r.workflow_id from runs r where r.status = 'pending' order by r.id for no key update skip locked
    loop
        select w.max_active_runs into v_max from workflows w where w.id = v_run.workflow_id;
        if v_max is not null then
            -- One starter per limited workflow at a time: the count, a statement after
            -- the lock, sees every run another caller started and committed meanwhile.
            perform pg_advisory_xact_lock(hashtext('{{.schema}}.max_active_runs'),
                                          (v_run.workflow_id % 2147483647)::integer);
            continue when (select count(*) from runs r
                           where r.workflow_id = v_run.workflow_id and r.status in ('running', 'paused')) >= v_max;
        end if;
        run_id := v_run.id;
        select s.status, s.tasks_created, s.error into status, tasks_created, error from _start_run(v_run.id) s;
        return next;
        v_started := v_started + 1;
        exit when v_started >= p_limit;
    end loop;
end
$$;
