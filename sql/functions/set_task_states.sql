-- _one_based returns a one-dimensional array with its first element at index 1.
create function {{.schema}}_api._one_based(p anyarray)
returns anyarray
language sql
immutable
as $$
    select case when coalesce(array_lower(p, 1), 1) = 1 then p else array(select unnest(p)) end
$$;

-- set_task_states applies N status reports in one call and returns one row per input:
--   ord      the input's position (1-based)
--   task_id  the input's task id
--   outcome  applied | retrying | ignored | invalid | stale | not_found
--   status   the task's status after the call (null when not found)
-- Arguments are parallel arrays; all but the first two may be null. An attempt of 0 or
-- null is unfenced; any other attempt must equal the task's current one or the row is
-- stale. A task named several times is changed in input order. An unknown status or
-- arrays of different lengths fail the whole call, changing nothing; bad ids never
-- block the other rows. Rows come back in input order within each round of repeats.
-- Arrays may start at any index (they are taken in order); more than one dimension
-- is refused (OK422). p_now is the time of the reports (retry times, start, finish and
-- timeout times are stamped from it; null or left out: now(), the transaction's start).
-- Example: select * from ork_api.set_task_states(array[1,2], array['running','success']);
create function {{.schema}}_api.set_task_states(
    p_task_ids bigint[],
    p_statuses text[],
    p_execution_names text[] default null,
    p_errors text[] default null,
    p_outputs jsonb[] default null,
    p_attempts integer[] default null,
    p_now timestamptz default now()
)
returns table (ord integer, task_id bigint, outcome text, status text)
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
    n integer := coalesce(cardinality(p_task_ids), 0);
    v_rank integer[];
    v_max integer;
    v_bad integer;
    v_ords integer[];
    v_now constant timestamptz := coalesce(p_now, now());
begin
    if p_task_ids is null then
        raise exception using errcode = 'OK422', column = 'task_ids', message = 'task_ids must not be null';
    end if;
    -- Arrays built in SQL may start at any index ('[0:1]={7,7}') or have two
    -- dimensions; the rounds below subscript them 1…n, and a shifted array paired
    -- each report with another row's fields. One-dimensional arrays are rebased to 1
    -- (free when they already start there); more dimensions are refused.
    if array_ndims(p_task_ids) > 1 or array_ndims(p_statuses) > 1 or array_ndims(p_execution_names) > 1
       or array_ndims(p_errors) > 1 or array_ndims(p_outputs) > 1 or array_ndims(p_attempts) > 1 then
        raise exception using errcode = 'OK422', column = 'task_ids',
            message = 'set_task_states takes one-dimensional arrays';
    end if;
    p_task_ids := _one_based(p_task_ids);
    p_statuses := _one_based(p_statuses);
    p_execution_names := _one_based(p_execution_names);
    p_errors := _one_based(p_errors);
    p_outputs := _one_based(p_outputs);
    p_attempts := _one_based(p_attempts);
    if coalesce(cardinality(p_statuses), 0) <> n then
        raise exception using errcode = 'OK422', column = 'statuses',
            message = format('statuses has %s elements, task_ids has %s', coalesce(cardinality(p_statuses), 0), n);
    end if;
    if p_execution_names is not null and cardinality(p_execution_names) <> n then
        raise exception using errcode = 'OK422', column = 'execution_names',
            message = format('execution_names has %s elements, task_ids has %s', cardinality(p_execution_names), n);
    end if;
    if p_errors is not null and cardinality(p_errors) <> n then
        raise exception using errcode = 'OK422', column = 'errors',
            message = format('errors has %s elements, task_ids has %s', cardinality(p_errors), n);
    end if;
    if p_outputs is not null and cardinality(p_outputs) <> n then
        raise exception using errcode = 'OK422', column = 'outputs',
            message = format('outputs has %s elements, task_ids has %s', cardinality(p_outputs), n);
    end if;
    if p_attempts is not null and cardinality(p_attempts) <> n then
        raise exception using errcode = 'OK422', column = 'attempts',
            message = format('attempts has %s elements, task_ids has %s', cardinality(p_attempts), n);
    end if;
    if n = 0 then
        return;
    end if;
    v_bad := array_position(p_task_ids, null);
    if v_bad is not null then
        raise exception using errcode = 'OK422', column = 'task_ids', message = format('task_ids[%s] is null', v_bad);
    end if;
    -- Array operators first (no statement to run when the input is good); the queries
    -- only find the element to name. Statuses are lower-cased only when they are not
    -- all known as they are (the usual input is).
    if not (p_statuses <@ array['pending', 'paused', 'dispatched', 'running', 'success', 'failed', 'cancelled']) then
        p_statuses := _lower_statuses(p_statuses);
    end if;
    if not (p_statuses <@ array['pending', 'paused', 'dispatched', 'running', 'success', 'failed', 'cancelled']) then
        select s.i into v_bad
        from unnest(p_statuses) with ordinality as s(st, i)
        where s.st is null or s.st not in ('pending', 'paused', 'dispatched', 'running', 'success', 'failed', 'cancelled')
        limit 1;
        raise exception using errcode = 'OK422', column = 'statuses',
            message = format('unknown task status %s at statuses[%s]', coalesce(quote_literal(p_statuses[v_bad]), 'NULL'), v_bad);
    end if;
    if p_attempts is not null and 0 > any(p_attempts) then
        raise exception using errcode = 'OK422', column = 'attempts', message = 'attempts must not be negative';
    end if;

    -- A null array stays null: _apply_task_changes unnests it beside the ids, which
    -- gives a null per row (as an array of nulls would, without building one).

    -- Distinct ids (the usual case) are one round.
    if n = 1 or n = (select count(distinct u.id) from unnest(p_task_ids) as u(id)) then
        return query select * from _apply_task_changes(
            array(select generate_series(1, n)), p_task_ids, p_statuses, p_execution_names, p_errors, p_outputs, p_attempts,
            v_now);
        return;
    end if;
    -- The occurrence number of each id: round r applies every id's r-th report.
    select array_agg(x.r order by x.o), max(x.r) into v_rank, v_max
    from (
        select u.o, row_number() over (partition by u.id order by u.o)::integer as r
        from unnest(p_task_ids) with ordinality as u(id, o)
    ) x;
    for r in 1..v_max loop
        v_ords := array(select o from generate_series(1, n) o where v_rank[o] = r order by o);
        return query select * from _apply_task_changes(
            v_ords,
            array(select p_task_ids[o] from unnest(v_ords) o),
            array(select p_statuses[o] from unnest(v_ords) o),
            array(select p_execution_names[o] from unnest(v_ords) o),
            array(select p_errors[o] from unnest(v_ords) o),
            array(select p_outputs[o] from unnest(v_ords) o),
            array(select p_attempts[o] from unnest(v_ords) o),
            v_now);
    end loop;
end
$$;

-- fail_dependent_tasks fails, transitively, the unfinished dependents of a failed task
-- with error 'dependency failed' and returns how many it failed. set_task_states does
-- this by itself; this is for a caller that failed a task some other way. OK404 for an
-- unknown task, OK409 for a task that is not failed.
create function {{.schema}}_api.fail_dependent_tasks(p_task_id bigint)
returns integer
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
    v_ids bigint[];
    v_runs bigint[];
    v_status text;
begin
    select t.status into v_status from tasks t where t.id = p_task_id;
    if not found then
        raise exception using errcode = 'OK404', message = format('task %s not found', p_task_id);
    end if;
    -- Only a failed task's dependents may fail because of it: failing a running or
    -- succeeded task's dependents would end work whose dependency is fine.
    if v_status <> 'failed' then
        raise exception using errcode = 'OK409',
            message = format('task %s is %s; only a failed task''s dependents can be failed', p_task_id, v_status);
    end if;
    select array_agg(f.task_id), array_agg(f.run_id) into v_ids, v_runs
    from _finish_dependents(array[p_task_id], 'failed', 'dependency failed') f;
    perform _end_deferred_jobs(v_ids);
    perform _count_finished(v_runs, array_fill('failed'::text, array[coalesce(cardinality(v_runs), 0)]));
    return coalesce(cardinality(v_ids), 0);
end
$$;
