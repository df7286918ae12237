-- _lock_run locks a run and returns its status; unknown runs raise OK404. The run's
-- tasks in p_task_statuses are locked first, in id order: reporters hold their tasks
-- and then lock the runs they finish (_count_finished), so an operation that took a
-- run before its tasks deadlocked against a concurrent report (TestMixedChurn).
create function {{.schema}}_api._lock_run(p_run_id bigint, p_task_statuses text[] default '{}')
returns text
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
    v_status text;
begin
    if cardinality(p_task_statuses) > 0 then
        perform 1 from tasks t
        where t.run_id = p_run_id and t.status = any(p_task_statuses)
        order by t.id
        for no key update;
    end if;
    select r.status into v_status from runs r where r.id = p_run_id for no key update;
    if not found then
        raise exception using errcode = 'OK404', message = format('run %s not found', p_run_id);
    end if;
    return v_status;
end
$$;

-- _end_run ends a locked run with p_status: its unfinished tasks (pending, paused,
-- dispatched, running) are cancelled with p_task_error, with their deferred jobs,
-- and the counts follow. A non-empty p_run_error replaces the run's error. The run's
-- end is announced on <schema>_runs.
create function {{.schema}}_api._end_run(p_run_id bigint, p_status text, p_task_error text, p_run_error text)
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
    v_ids bigint[];
begin
    with locked as (
        select t.id from tasks t
        where t.run_id = p_run_id and t.status not in ('success', 'failed', 'cancelled')
        order by t.id
        for no key update
    ), hit as (
        update tasks t
        set status = 'cancelled', error = p_task_error, finished_at = now(), claimed_by = '',
            lease_expires_at = null, timeout_at = null, retry_at = null
        from locked where t.id = locked.id
        returning t.id
    )
    select array_agg(hit.id) into v_ids from hit;
    perform _queue_sync(v_ids);
    perform _end_deferred_jobs(v_ids);
    update runs r
    set status = p_status, finished_at = now(), started_at = coalesce(r.started_at, now()),
        error = case when coalesce(p_run_error, '') = '' then r.error else p_run_error end,
        tasks_finished = r.tasks_finished + coalesce(cardinality(v_ids), 0),
        tasks_cancelled = r.tasks_cancelled + coalesce(cardinality(v_ids), 0)
    where r.id = p_run_id;
    perform _notify_run_finished(p_run_id, p_status);
end
$$;

-- cancel_run cancels a run and every unfinished task of it (pending, paused,
-- dispatched, running) with their deferred jobs. A finished run refuses (OK409).
create function {{.schema}}_api.cancel_run(p_run_id bigint)
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
    v_status text := _lock_run(p_run_id, array['pending', 'paused', 'dispatched', 'running']);
begin
    if v_status in ('success', 'failed', 'cancelled') then
        raise exception using errcode = 'OK409', message = format('run %s is %s and cannot be cancelled', p_run_id, v_status);
    end if;
    perform _end_run(p_run_id, 'cancelled', 'run cancelled', '');
end
$$;

-- _move_run is pause and resume: the run must be p_expect (else OK409 with p_refusal);
-- it becomes p_run_status and its tasks in p_from move to p_to, with the queue in step.
create function {{.schema}}_api._move_run(p_run_id bigint, p_expect text, p_refusal text,
                                           p_run_status text, p_from text, p_to text)
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
    v_status text := _lock_run(p_run_id, array[p_from]);
    v_ids bigint[];
begin
    if v_status <> p_expect then
        raise exception using errcode = 'OK409', message = format(p_refusal, p_run_id, v_status);
    end if;
    update runs r set status = p_run_status where r.id = p_run_id;
    with moved as (
        update tasks t set status = p_to where t.run_id = p_run_id and t.status = p_from returning t.id
    )
    select array_agg(moved.id) into v_ids from moved;
    perform _queue_sync(v_ids);
end
$$;

-- pause_run stops dispatch of a running run: its pending tasks become paused
-- (dispatched and running tasks carry on). Other states refuse (OK409).
create function {{.schema}}_api.pause_run(p_run_id bigint)
returns void
language sql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
    select _move_run(p_run_id, 'running', 'run %s is %s and cannot be paused', 'paused', 'pending', 'paused')
$$;

-- resume_run undoes pause_run: paused tasks become pending again and the run goes
-- back to running. Other states refuse (OK409).
create function {{.schema}}_api.resume_run(p_run_id bigint)
returns void
language sql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
    select _move_run(p_run_id, 'paused', 'run %s is %s, not paused', 'running', 'paused', 'pending');
    select _notify('tasks_ready');
$$;

-- finish_run is an operator's verdict: the run ends with p_status (success or failed)
-- and p_error; its unfinished tasks are cancelled with error 'run finished by
-- operator', with their deferred jobs. A finished run refuses (OK409).
create function {{.schema}}_api.finish_run(p_run_id bigint, p_status text, p_error text default '')
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
    v_status text;
begin
    p_status := lower(p_status);
    if p_status is null or p_status not in ('success', 'failed') then
        raise exception using errcode = 'OK422', column = 'status',
            message = format('finish_run takes success or failed, not %s', coalesce(quote_literal(p_status), 'NULL'));
    end if;
    v_status := _lock_run(p_run_id, array['pending', 'paused', 'dispatched', 'running']);
    if v_status in ('success', 'failed', 'cancelled') then
        raise exception using errcode = 'OK409', message = format('run %s is %s and cannot change', p_run_id, v_status);
    end if;
    perform _end_run(p_run_id, p_status, 'run finished by operator', p_error);
end
$$;
