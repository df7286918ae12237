-- create_tasks creates a run's tasks from a JSON array of task specs
--   [{"task_index": 0, "task_name": "extract", "executor_type": "process",
--     "depends_on": ["..."], "params": {...}, "max_retries": 2, "timeout_seconds": 60}, ...]
-- and returns the run's tasks with the given indexes, in index order. It is idempotent:
-- a spec whose index or name the run already has is skipped. Dependencies resolve against
-- the specs and the run's existing tasks; an unknown name, a duplicate, or a cycle raises
-- OK422 naming the task and creates nothing. A pending run becomes running; a paused
-- run gets paused tasks; a finished run refuses (OK409).
create function {{.schema}}_api.create_tasks(p_run_id bigint, p_specs jsonb)
returns setof {{.schema}}.tasks
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
as $$
declare
    v_run_status text;
    v_names text[];
    v_deps text[][];
    n integer;
    v_bad text;
    v_succeeded text[];
    v_src integer[];
    v_dst integer[];
    v_start integer[];
    v_indeg integer[];
    v_queue integer[];
    v_qlen integer;
    v_edges integer;
    v_head integer := 1;
    v_i integer;
    v_k integer;
    v_ids bigint[];
    v_status text;
    v_inserted integer;
    v_ready boolean;
begin
    if p_specs is null or jsonb_typeof(p_specs) <> 'array' then
        raise exception using errcode = 'OK422', column = 'tasks', message = 'task specs must be a JSON array';
    end if;
    select r.status into v_run_status from runs r where r.id = p_run_id for no key update;
    if not found then
        raise exception using errcode = 'OK404', message = format('run %s not found', p_run_id);
    end if;
    if v_run_status in ('success', 'failed', 'cancelled') then
        raise exception using errcode = 'OK409', message = format('run %s is %s; its tasks cannot change', p_run_id, v_run_status);
    end if;

    -- Normalise the specs; deps are de-duplicated so counters count distinct names.
    create temp table if not exists pg_temp.ork_new_tasks (
        pos integer, task_index integer, task_name text, executor_type text, depends_on text[],
        params jsonb, max_retries integer, timeout_seconds integer
    ) on commit drop;
    truncate pg_temp.ork_new_tasks;
    begin
        insert into pg_temp.ork_new_tasks
        select e.pos::integer,
               (e.spec->>'task_index')::integer,
               e.spec->>'task_name',
               coalesce(e.spec->>'executor_type', ''),
               coalesce(array(select distinct d from jsonb_array_elements_text(coalesce(e.spec->'depends_on', '[]')) d order by d), '{}'),
               e.spec->'params',
               coalesce((e.spec->>'max_retries')::integer, 0),
               coalesce((e.spec->>'timeout_seconds')::integer, 0)
        from jsonb_array_elements(p_specs) with ordinality as e(spec, pos);
    exception when invalid_text_representation or numeric_value_out_of_range or invalid_parameter_value then
        raise exception using errcode = 'OK422', column = 'tasks', message = 'task specs: ' || sqlerrm;
    end;

    select t.task_name into v_bad from pg_temp.ork_new_tasks t
    where t.task_name is null or t.task_name = '' or t.task_index is null or t.task_index < 0
       or t.max_retries < 0 or t.timeout_seconds < 0
    limit 1;
    if found then
        raise exception using errcode = 'OK422', column = 'tasks',
            message = format('task %s: needs a non-empty task_name, a task_index >= 0 and non-negative max_retries and timeout_seconds', coalesce(quote_literal(v_bad), '(unnamed)'));
    end if;
    select t.task_name into v_bad from pg_temp.ork_new_tasks t group by t.task_name having count(*) > 1 limit 1;
    if found then
        raise exception using errcode = 'OK422', column = 'task_name', message = format('duplicate task name %L', v_bad);
    end if;
    select t.task_index::text into v_bad from pg_temp.ork_new_tasks t group by t.task_index having count(*) > 1 limit 1;
    if found then
        raise exception using errcode = 'OK422', column = 'task_index', message = format('duplicate task_index %s', v_bad);
    end if;

    -- Skip what the run already has (idempotent per index and per name).
    delete from pg_temp.ork_new_tasks t
    using tasks e
    where e.run_id = p_run_id and e.task_index = t.task_index;
    delete from pg_temp.ork_new_tasks t
    using tasks e
    where e.run_id = p_run_id and e.task_name = t.task_name;

    select coalesce(array_agg(e.task_name), '{}') into v_succeeded
    from tasks e where e.run_id = p_run_id and e.status = 'success';

    select count(*) into n from pg_temp.ork_new_tasks;
    if n > 1000 then
        analyze pg_temp.ork_new_tasks; -- large DAGs: give the planner real numbers for the joins below
    end if;
    if n > 0 then
        select array_agg(t.task_name order by t.pos) into v_names from pg_temp.ork_new_tasks t;
        -- Every dependency must name a new or an existing task of the run.
        select format('task %L depends on unknown task %L', t.task_name, d) into v_bad
        from pg_temp.ork_new_tasks t cross join unnest(t.depends_on) d
        where not exists (select 1 from pg_temp.ork_new_tasks x where x.task_name = d)
          and not exists (select 1 from tasks e where e.run_id = p_run_id and e.task_name = d)
        limit 1;
        if v_bad is not null then
            raise exception using errcode = 'OK422', column = 'depends_on', message = v_bad;
        end if;

        -- Kahn's algorithm over the new tasks (existing tasks were checked when created).
        -- Positions follow v_names; edges run dependency → dependent, sorted by source.
        with pos as (
            select t.task_name, row_number() over (order by t.pos)::integer as p, t.depends_on from pg_temp.ork_new_tasks t
        )
        select array_agg(src.p order by src.p, dst.p), array_agg(dst.p order by src.p, dst.p)
        into v_src, v_dst
        from pos dst cross join unnest(dst.depends_on) d join pos src on src.task_name = d;
        v_indeg := array_fill(0, array[n]);
        v_start := array_fill(null::integer, array[n]);
        for v_k in 1..coalesce(cardinality(v_src), 0) loop
            v_indeg[v_dst[v_k]] := v_indeg[v_dst[v_k]] + 1;
            if v_start[v_src[v_k]] is null then
                v_start[v_src[v_k]] := v_k;
            end if;
        end loop;
        -- A preallocated queue: element assignment on a plpgsql array is O(1), appending is not.
        v_queue := array_fill(0, array[n]);
        v_qlen := 0;
        for v_i in 1..n loop
            if v_indeg[v_i] = 0 then
                v_qlen := v_qlen + 1;
                v_queue[v_qlen] := v_i;
            end if;
        end loop;
        v_edges := coalesce(cardinality(v_src), 0);
        while v_head <= v_qlen loop
            v_i := v_queue[v_head];
            v_head := v_head + 1;
            v_k := v_start[v_i];
            while v_k is not null and v_k <= v_edges and v_src[v_k] = v_i loop
                v_indeg[v_dst[v_k]] := v_indeg[v_dst[v_k]] - 1;
                if v_indeg[v_dst[v_k]] = 0 then
                    v_qlen := v_qlen + 1;
                    v_queue[v_qlen] := v_dst[v_k];
                end if;
                v_k := v_k + 1;
            end loop;
        end loop;
        if v_qlen < n then
            select string_agg(quote_literal(v_names[i]), ', ' order by v_names[i]) into v_bad
            from generate_series(1, n) i where v_indeg[i] > 0;
            raise exception using errcode = 'OK422', column = 'depends_on', message = 'dependency cycle among tasks ' || v_bad;
        end if;

        -- Ids are drawn first so each task's downstream array is written with the task.
        v_ids := array(select nextval(pg_get_serial_sequence('{{.schema}}.tasks', 'id')) from generate_series(1, n));
        v_status := case when v_run_status = 'paused' then 'paused' else 'pending' end;
        -- New tasks that depend on existing ones join those tasks' downstream arrays
        -- (before the insert, so the join sees only the existing tasks).
        with edge as (
            select e.id as upstream, array_agg(v_ids[t.p] order by t.p) as ids
            from (select nt.*, row_number() over (order by nt.pos)::integer as p from pg_temp.ork_new_tasks nt) t
            cross join unnest(t.depends_on) d
            join tasks e on e.run_id = p_run_id and e.task_name = d
            group by e.id
        )
        update tasks e set downstream = e.downstream || edge.ids from edge where e.id = edge.upstream;

        with pos as (
            select t.*, row_number() over (order by t.pos)::integer as p from pg_temp.ork_new_tasks t
        ), down as (
            select v_src[k] as p, array_agg(v_ids[v_dst[k]] order by k) as ids
            from generate_series(1, v_edges) k
            group by v_src[k]
        ), ins as (
            insert into tasks (id, run_id, task_index, task_name, executor_type, depends_on, status, params,
                               max_retries, timeout_seconds, unmet_deps, downstream)
            overriding system value
            select v_ids[pos.p], p_run_id, pos.task_index, pos.task_name, pos.executor_type, pos.depends_on,
                   v_status, pos.params, pos.max_retries, pos.timeout_seconds,
                   (select count(*) from unnest(pos.depends_on) d where d <> all(v_succeeded))::integer,
                   coalesce(down.ids, '{}')
            from pos
            left join down on down.p = pos.p
            order by pos.task_index
            returning tasks.id, tasks.status, tasks.unmet_deps, tasks.executor_type
        ), queued as (
            insert into task_queue (task_id, state, executor_type)
            select ins.id, 'ready', ins.executor_type from ins where ins.status = 'pending' and ins.unmet_deps = 0
            returning 1
        )
        select (select count(*) from ins), exists (select 1 from queued)
        into v_inserted, v_ready;

        update runs r
        set tasks_total = r.tasks_total + v_inserted,
            status = case when r.status = 'pending' then 'running' else r.status end,
            started_at = coalesce(r.started_at, now())
        where r.id = p_run_id;
        if v_ready then
            perform _notify('tasks_ready');
        end if;
    end if;

    return query
    select t.* from tasks t
    where t.run_id = p_run_id
      and (t.task_index in (select (e->>'task_index')::integer from jsonb_array_elements(p_specs) e)
           or t.task_name in (select e->>'task_name' from jsonb_array_elements(p_specs) e))
    order by t.task_index;
end
$$;
