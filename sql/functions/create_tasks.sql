-- create_tasks creates a run's tasks from a JSON array of task specs
--   [{"task_index": 0, "task_name": "extract", "executor_type": "process",
--     "depends_on": ["..."], "params": {...}, "max_retries": 2, "timeout_seconds": 60}, ...]
-- ("name" may stand for "task_name", as in snapshots; a missing task_index is the spec's
-- position, from 0) and returns the run's tasks named by the specs (by index or by name),
-- in index order. It is idempotent: a spec whose index or name the run already has is skipped
-- (after the same checks as the others). Dependencies resolve against the new specs and the
-- run's existing tasks; an unknown name, a duplicate, or a cycle raises OK422 naming the
-- task and creates nothing. A new task whose dependency already failed fails at once with
-- 'dependency failed' (cancelled: 'dependency cancelled'), so its run can still finish.
-- A pending run becomes running; a paused run gets paused tasks; a finished run refuses (OK409).
--
-- The specs are held in plpgsql arrays, not a temporary table: a temp table created per
-- transaction invalidated every cached plan that read it, so each call re-planned all of
-- its statements (about 10 ms per 100-task run start, most of the end-to-end cost).
create function {{.schema}}_api.create_tasks(p_run_id bigint, p_specs jsonb)
returns setof {{.schema}}.tasks
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
begin
    perform _create_tasks(p_run_id, p_specs);
    -- unmet_deps as Task.UnmetDeps (task_unmet_deps): a caller selecting from this
    -- function reads with a snapshot from before it ran, which cannot see the counts
    -- kept apart (readiness.sql) that it wrote; read here, this statement's can.
    return query
    select r.* from tasks t
    cross join lateral jsonb_populate_record(t, jsonb_build_object('unmet_deps',
        task_unmet_deps(t.id, t.run_id, t.depends_on, t.unmet_deps))) r
    where t.run_id = p_run_id
      and (t.task_index in (select coalesce((e.spec->>'task_index')::integer, e.pos::integer - 1)
                            from jsonb_array_elements(p_specs) with ordinality as e(spec, pos))
           or t.task_name in (select coalesce(e->>'task_name', e->>'name') from jsonb_array_elements(p_specs) e))
    order by t.task_index;
end
$$;

-- _tasks_added counts p_inserted new tasks into their run, starts a pending run, and
-- announces tasks_ready when p_ready (some new task is dispatchable at once).
create function {{.schema}}_api._tasks_added(p_run_id bigint, p_inserted integer, p_ready boolean)
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
begin
    update runs r
    set tasks_total = r.tasks_total + p_inserted,
        status = case when r.status = 'pending' then 'running' else r.status end,
        started_at = coalesce(r.started_at, now())
    where r.id = p_run_id;
    if p_ready then
        perform _notify('tasks_ready');
    end if;
end
$$;

-- _dag_edges returns the edges among p_names (dependency → dependent, by position,
-- sorted by source) and, when they contain a cycle, the names on or behind it
-- (quoted, sorted, comma-separated); cycle is null for a DAG. Kahn's algorithm.
create function {{.schema}}_api._dag_edges(p_names text[], p_deps text[], out src integer[], out dst integer[], out cycle text)
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
    n integer := coalesce(cardinality(p_names), 0);
    v_start integer[];
    v_indeg integer[];
    v_queue integer[];
    v_qlen integer := 0;
    v_edges integer;
    v_head integer := 1;
    v_i integer;
    v_k integer;
begin
    -- p_deps elements are text[] literals (see _create_tasks)
    select array_agg(s.p order by s.p, d.p), array_agg(d.p order by s.p, d.p)
    into src, dst
    from unnest(p_names, p_deps) with ordinality as d(name, deps, p)
    cross join unnest(d.deps::text[]) dep
    join unnest(p_names) with ordinality as s(name, p) on s.name = dep;
    if n = 0 then
        return;
    end if;
    v_edges := coalesce(cardinality(src), 0);
    v_indeg := array_fill(0, array[n]);
    v_start := array_fill(null::integer, array[n]);
    for v_k in 1..v_edges loop
        v_indeg[dst[v_k]] := v_indeg[dst[v_k]] + 1;
        if v_start[src[v_k]] is null then
            v_start[src[v_k]] := v_k;
        end if;
    end loop;
    -- A preallocated queue: element assignment on a plpgsql array is O(1), appending is not.
    v_queue := array_fill(0, array[n]);
    for v_i in 1..n loop
        if v_indeg[v_i] = 0 then
            v_qlen := v_qlen + 1;
            v_queue[v_qlen] := v_i;
        end if;
    end loop;
    while v_head <= v_qlen loop
        v_i := v_queue[v_head];
        v_head := v_head + 1;
        v_k := v_start[v_i];
        while v_k is not null and v_k <= v_edges and src[v_k] = v_i loop
            v_indeg[dst[v_k]] := v_indeg[dst[v_k]] - 1;
            if v_indeg[dst[v_k]] = 0 then
                v_qlen := v_qlen + 1;
                v_queue[v_qlen] := dst[v_k];
            end if;
            v_k := v_k + 1;
        end loop;
    end loop;
    if v_qlen < n then
        select string_agg(quote_literal(p_names[i]), ', ' order by p_names[i]) into cycle
        from generate_series(1, n) i where v_indeg[i] > 0;
    end if;
end
$$;

-- _create_tasks does create_tasks' work and returns how many tasks it inserted.
create function {{.schema}}_api._create_tasks(p_run_id bigint, p_specs jsonb)
returns integer
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
    v_run_status text;
    -- the new tasks, one element each, in spec order (position = array index)
    v_idx integer[];
    v_names text[];
    v_types text[];
    -- each element is a text[] literal: a plpgsql array cannot be ragged, and casting a
    -- literal back per row is far cheaper than a jsonb set-returning function
    v_deps text[];
    v_params jsonb[];
    v_retries integer[];
    v_timeouts integer[];
    v_prios smallint[];
    v_keys text[];
    v_wf_priority smallint;
    n integer;
    v_bad text;
    v_known boolean[];
    v_total integer;
    v_succeeded text[];
    v_src integer[];
    v_dst integer[];
    v_edges integer;
    v_ids bigint[];
    v_dead_failed bigint[];
    v_dead_cancelled bigint[];
    v_dep_runs bigint[];
    v_status text;
    v_inserted integer := 0;
    v_ready boolean;
    -- the sequence is looked up once: per row, the lookup cost as much as the insert
    v_seq regclass := pg_get_serial_sequence('{{.schema}}.tasks', 'id')::regclass;
begin
    if p_specs is null or jsonb_typeof(p_specs) <> 'array' then
        raise exception using errcode = 'OK422', column = 'tasks', message = 'task specs must be a JSON array';
    end if;
    perform _check_task_specs(p_specs);
    select r.status into v_run_status from runs r where r.id = p_run_id for no key update;
    if not found then
        raise exception using errcode = 'OK404', message = format('run %s not found', p_run_id);
    end if;
    if v_run_status in ('success', 'failed', 'cancelled') then
        raise exception using errcode = 'OK409', message = format('run %s is %s; its tasks cannot change', p_run_id, v_run_status);
    end if;

    -- Validate every spec (before skipping the existing ones, so bad input is always refused).
    begin
        select coalesce(e.spec->>'task_name', e.spec->>'name') into v_bad
        from jsonb_array_elements(p_specs) with ordinality as e(spec, pos)
        where coalesce(coalesce(e.spec->>'task_name', e.spec->>'name'), '') = '' or coalesce((e.spec->>'task_index')::integer, e.pos::integer - 1) is null
           or coalesce((e.spec->>'task_index')::integer, e.pos::integer - 1) < 0
           or coalesce((e.spec->>'max_retries')::integer, 0) < 0
           or coalesce((e.spec->>'timeout_seconds')::integer, 0) < 0
           or jsonb_typeof(coalesce(e.spec->'depends_on', '[]')) <> 'array'
           or coalesce(jsonb_typeof(e.spec->'concurrency_key'), 'string') not in ('string', 'null')
        limit 1;
        if found then
            raise exception using errcode = 'OK422', column = 'tasks',
                message = format('task %s: needs a non-empty task_name, a task_index >= 0, non-negative max_retries and timeout_seconds, depends_on as an array and concurrency_key as a string',
                                 coalesce(quote_literal(v_bad), '(unnamed)'));
        end if;
    exception when invalid_text_representation or numeric_value_out_of_range or invalid_parameter_value then
        raise exception using errcode = 'OK422', column = 'tasks', message = 'task specs: ' || sqlerrm;
    end;
    begin
        select coalesce(e.spec->>'task_name', e.spec->>'name') || ': ' || (e.spec->>'priority') into v_bad
        from jsonb_array_elements(p_specs) as e(spec)
        where e.spec ? 'priority' and jsonb_typeof(e.spec->'priority') <> 'null'
          and (jsonb_typeof(e.spec->'priority') <> 'number' or (e.spec->>'priority')::numeric not between -1000 and 1000
               or (e.spec->>'priority')::numeric <> trunc((e.spec->>'priority')::numeric))
        limit 1;
    exception when invalid_text_representation or numeric_value_out_of_range then
        v_bad := 'priority';
    end;
    if v_bad is not null then
        raise exception using errcode = 'OK422', column = 'priority',
            message = format('task %s: priority must be an integer between -1000 and 1000', v_bad);
    end if;
    select coalesce(e.spec->>'task_name', e.spec->>'name') into v_bad
    from jsonb_array_elements(p_specs) with ordinality as e(spec, pos) group by 1 having count(*) > 1 limit 1;
    if found then
        raise exception using errcode = 'OK422', column = 'task_name', message = format('duplicate task name %L', v_bad);
    end if;
    select coalesce((e.spec->>'task_index')::integer, e.pos::integer - 1)::text into v_bad
    from jsonb_array_elements(p_specs) with ordinality as e(spec, pos) group by 1 having count(*) > 1 limit 1;
    if found then
        raise exception using errcode = 'OK422', column = 'task_index', message = format('duplicate task_index %s', v_bad);
    end if;

    -- Every spec, in spec order, and whether the run already has its index or name.
    -- Dependencies are de-duplicated, so counters count distinct names.
    select array_agg(s.idx order by s.pos), array_agg(s.name order by s.pos),
           array_agg(s.etype order by s.pos), array_agg(s.deps order by s.pos),
           array_agg(s.params order by s.pos), array_agg(s.retries order by s.pos),
           array_agg(s.timeout order by s.pos), array_agg(s.known order by s.pos),
           array_agg(s.prio order by s.pos), array_agg(s.ckey order by s.pos)
    into v_idx, v_names, v_types, v_deps, v_params, v_retries, v_timeouts, v_known, v_prios, v_keys
    from (
        select e.pos,
               coalesce((e.spec->>'task_index')::integer, e.pos::integer - 1) as idx,
               coalesce(e.spec->>'task_name', e.spec->>'name') as name,
               coalesce(e.spec->>'executor_type', '') as etype,
               array(select distinct d from jsonb_array_elements_text(coalesce(e.spec->'depends_on', '[]')) d order by d)::text as deps,
               e.spec->'params' as params,
               coalesce((e.spec->>'max_retries')::integer, 0) as retries,
               coalesce((e.spec->>'timeout_seconds')::integer, 0) as timeout,
               (e.spec->>'priority')::numeric::smallint as prio,
               coalesce(e.spec->>'concurrency_key', '') as ckey,
               exists (select 1 from tasks t
                       where t.run_id = p_run_id
                         and t.task_index = coalesce((e.spec->>'task_index')::integer, e.pos::integer - 1))
               or exists (select 1 from tasks t
                          where t.run_id = p_run_id
                            and t.task_name = coalesce(e.spec->>'task_name', e.spec->>'name')) as known
        from jsonb_array_elements(p_specs) with ordinality as e(spec, pos)
    ) s;
    v_total := coalesce(cardinality(v_idx), 0);

    -- The checks cover every spec, also those the run already has (they are skipped
    -- below, not trusted): every dependency must name a new task or one the run has,
    -- and the input as declared must have no cycle.
    select format('task %L depends on unknown task %L', x.name, d) into v_bad
    from unnest(v_names, v_deps) as x(name, deps)
    cross join unnest(x.deps::text[]) d
    left join unnest(v_names, v_known) as known(name, old) on known.name = d and not known.old
    where known.name is null
      and not exists (select 1 from tasks t where t.run_id = p_run_id and t.task_name = d)
    limit 1;
    if v_bad is not null then
        raise exception using errcode = 'OK422', column = 'depends_on', message = v_bad;
    end if;
    if v_total > 0 and true = any(v_known) then
        select k.cycle into v_bad from _dag_edges(v_names, v_deps) k;
        if v_bad is not null then
            raise exception using errcode = 'OK422', column = 'depends_on', message = 'dependency cycle among tasks ' || v_bad;
        end if;
        -- The new tasks only (idempotency: the run keeps the tasks it has).
        select coalesce(array_agg(x.idx order by x.p), '{}'), array_agg(x.name order by x.p),
               array_agg(x.etype order by x.p), array_agg(x.deps order by x.p),
               array_agg(x.params order by x.p), array_agg(x.retries order by x.p),
               array_agg(x.timeout order by x.p), array_agg(x.prio order by x.p), array_agg(x.ckey order by x.p)
        into v_idx, v_names, v_types, v_deps, v_params, v_retries, v_timeouts, v_prios, v_keys
        from unnest(v_idx, v_names, v_types, v_deps, v_params, v_retries, v_timeouts, v_known, v_prios, v_keys)
            with ordinality as x(idx, name, etype, deps, params, retries, timeout, old, prio, ckey, p)
        where not x.old;
    end if;
    n := coalesce(cardinality(v_idx), 0);

    if n > 0 then
        -- Kahn's algorithm over the new tasks (existing tasks were checked when created;
        -- no existing task depends on a new one, so a cycle lies among the new ones).
        select k.src, k.dst, k.cycle into v_src, v_dst, v_bad from _dag_edges(v_names, v_deps) k;
        if v_bad is not null then
            raise exception using errcode = 'OK422', column = 'depends_on', message = 'dependency cycle among tasks ' || v_bad;
        end if;
        v_edges := coalesce(cardinality(v_src), 0);

        -- Ids are drawn first so each task's downstream array is written with the task.
        v_ids := array(select nextval(v_seq) from generate_series(1, n));
        v_status := case when v_run_status = 'paused' then 'paused' else 'pending' end;
        select w.priority into v_wf_priority from runs r join workflows w on w.id = r.workflow_id where r.id = p_run_id;
        select coalesce(array_agg(t.task_name), '{}') into v_succeeded
        from tasks t where t.run_id = p_run_id and t.status = 'success';

        -- Existing dependencies that already failed or were cancelled: the new tasks
        -- that depend on them finish at once, below, as if they had been there then.
        -- (A run that has none, as every run being started, pays one probe.)
        if exists (select 1 from tasks t where t.run_id = p_run_id and t.status in ('failed', 'cancelled')) then
            select array_agg(distinct e.id) filter (where e.status = 'failed'),
                   array_agg(distinct e.id) filter (where e.status = 'cancelled')
            into v_dead_failed, v_dead_cancelled
            from unnest(v_deps) as x(deps)
            cross join unnest(x.deps::text[]) d
            join tasks e on e.run_id = p_run_id and e.task_name = d
            where e.status in ('failed', 'cancelled');
        end if;

        -- New tasks that depend on existing ones join those tasks' downstream arrays
        -- (before the insert, so the join sees only the existing tasks).
        with edge as (
            select e.id as upstream, array_agg(v_ids[x.p] order by x.p) as ids
            from unnest(v_deps) with ordinality as x(deps, p)
            cross join unnest(x.deps::text[]) d
            join tasks e on e.run_id = p_run_id and e.task_name = d
            group by e.id
        )
        update tasks e set downstream = e.downstream || edge.ids from edge where e.id = edge.upstream;

        with down as (
            select v_src[k] as p, array_agg(v_ids[v_dst[k]] order by k) as ids
            from generate_series(1, v_edges) k
            group by v_src[k]
        ), spec as (
            -- n: the dependencies not met yet (readiness.sql: none on the row)
            select s.*, case when cardinality(v_succeeded) = 0 then cardinality(s.deps::text[])
                             else (select count(*) from unnest(s.deps::text[]) d where d <> all(v_succeeded))::integer
                        end as n
            from unnest(v_idx, v_names, v_types, v_deps, v_params, v_retries, v_timeouts, v_prios, v_keys)
                with ordinality as s(idx, name, etype, deps, params, retries, timeout, prio, ckey, p)
        ), ins as (
            insert into tasks (id, run_id, task_index, task_name, executor_type, depends_on, status, params,
                               max_retries, timeout_seconds, unmet_deps, downstream,
                               priority, priority_override, concurrency_key)
            overriding system value
            select v_ids[s.p], p_run_id, s.idx, s.name, s.etype,
                   s.deps::text[],
                   v_status, s.params, s.retries, s.timeout,
                   -- one dependency: readiness is derived from its status; several:
                   -- counted apart (readiness.sql)
                   0,
                   coalesce(down.ids, '{}'),
                   coalesce(s.prio, v_wf_priority), s.prio, s.ckey
            from spec s
            left join down on down.p = s.p
            order by s.idx
            returning tasks.id, tasks.status, tasks.depends_on, tasks.executor_type, tasks.priority
        ), apart as (
            insert into task_deps_unmet (task_id, unmet)
            select v_ids[s.p], s.n from spec s
            where cardinality(s.deps::text[]) >= 2 and s.n > 0
            order by 1
        ), queued as (
            insert into task_queue (task_id, executor_type, priority)
            select ins.id, ins.executor_type, ins.priority
            from ins
            where ins.status = 'pending' and ins.depends_on <@ v_succeeded  -- every one met (n = 0)
            returning 1
        )
        select (select count(*) from ins), exists (select 1 from queued)
        into v_inserted, v_ready;

        perform _place_run_tasks(p_run_id);
        perform _tasks_added(p_run_id, v_inserted, v_ready);

        -- A new task whose dependency already failed (or was cancelled) would never
        -- become ready and its run would never finish: it fails (is cancelled) at once
        -- with its own dependents, by the state machine's propagation rule.
        if v_dead_failed is not null then
            select array_agg(f.run_id) into v_dep_runs
            from _finish_dependents(v_dead_failed, 'failed', 'dependency failed') f;
            perform _count_finished(v_dep_runs, array_fill('failed'::text, array[coalesce(cardinality(v_dep_runs), 0)]));
        end if;
        if v_dead_cancelled is not null then
            select array_agg(f.run_id) into v_dep_runs
            from _finish_dependents(v_dead_cancelled, 'cancelled', 'dependency cancelled') f;
            perform _count_finished(v_dep_runs, array_fill('cancelled'::text, array[coalesce(cardinality(v_dep_runs), 0)]));
        end if;
    end if;

    return v_inserted;
end
$$;
