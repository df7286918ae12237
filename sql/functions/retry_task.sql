-- retry_task is an operator's retry: a finished task of an unfinished run goes back to
-- pending (attempts reset, error, execution name, output and timestamps cleared,
-- unmet_deps recomputed),
-- with the transitive dependents that failed or were cancelled because of it. When the
-- task had succeeded, its waiting dependents count it as unmet again. OK404 for an
-- unknown task; OK409 for an unfinished task or a finished run.
create function {{.schema}}_api.retry_task(p_task_id bigint)
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
    v_task record;
    v_run_status text;
    v_reset bigint[];
    v_failed integer;
    v_cancelled integer;
    v_finished integer;
    v_blocked bigint[];
begin
    select t.id, t.run_id, t.status, t.downstream into v_task from tasks t where t.id = p_task_id;
    if not found then
        raise exception using errcode = 'OK404', message = format('task %s not found', p_task_id);
    end if;
    -- the dependents it may block again (pending, paused) before the run, as reporters do
    v_run_status := _lock_run(v_task.run_id, array['pending', 'paused']);
    perform 1 from tasks t where t.id = p_task_id for no key update;
    select t.status into v_task.status from tasks t where t.id = p_task_id;
    if v_task.status not in ('success', 'failed', 'cancelled') then
        raise exception using errcode = 'OK409', message = format('task %s is %s; only finished tasks can be retried', p_task_id, v_task.status);
    end if;
    if v_run_status in ('success', 'failed', 'cancelled') then
        raise exception using errcode = 'OK409', message = format('run %s is %s; its tasks cannot be retried', v_task.run_id, v_run_status);
    end if;

    with recursive down(id) as (
        select dn.id from unnest(v_task.downstream) as dn(id)
        union
        select dn.id from down join tasks s on s.id = down.id cross join unnest(s.downstream) as dn(id)
        where s.status in ('failed', 'cancelled') and s.error in ('dependency failed', 'dependency cancelled')
    )
    select array_agg(t.id order by t.id) into v_reset
    from tasks t
    where t.id = any(array(select down.id from down))
      and t.status in ('failed', 'cancelled') and t.error in ('dependency failed', 'dependency cancelled');
    v_reset := array[p_task_id] || coalesce(v_reset, '{}');

    perform 1 from tasks t where t.id = any(v_reset) order by t.id for no key update;
    select count(*), count(*) filter (where t.status = 'failed'), count(*) filter (where t.status = 'cancelled')
    into v_finished, v_failed, v_cancelled
    from tasks t where t.id = any(v_reset);

    if v_task.status = 'success' then
        -- Its waiting dependents are blocked again: a counted one counts it again (apart,
        -- or on an older package's row); one whose only dependency it is derives that
        -- (its queue row goes in _queue_sync below, once the task is pending).
        with locked as (
            select t.id, _deps_derived(t.depends_on, t.unmet_deps) as derived,
                   _deps_apart(t.depends_on, t.unmet_deps) as apart
            from tasks t
            where t.id = any(v_task.downstream) and t.status in ('pending', 'paused') and t.id <> all(v_reset)
            order by t.id
            for no key update
        ), counted as (
            update tasks t set unmet_deps = t.unmet_deps + 1
            from locked where t.id = locked.id and not locked.derived and not locked.apart
        ), apart as (
            insert into task_deps_unmet as n (task_id, unmet)
            select locked.id, 1 from locked where locked.apart
            on conflict (task_id) do update set unmet = n.unmet + 1
        )
        select array_agg(locked.id) into v_blocked from locked;
    end if;

    -- The reset tasks count their unmet dependencies afresh (apart from the row:
    -- readiness.sql), the task itself and those reset with it among them.
    perform _set_deps_unmet(array_agg(t.id), array_agg(x.n))
    from tasks t
    cross join lateral (select count(*)::integer as n from unnest(t.depends_on) d
                        where not exists (select 1 from tasks u
                                          where u.run_id = t.run_id and u.task_name = d and u.status = 'success'
                                            and u.id <> all(v_reset))) x
    where t.id = any(v_reset) and cardinality(t.depends_on) >= 2;

    update tasks t
    set status = case when v_run_status = 'paused' then 'paused' else 'pending' end,
        attempts = 0, error = '', output = null, execution_name = '', retry_at = null, claimed_by = '', lease_expires_at = null,
        timeout_at = null, dispatched_at = null, started_at = null, finished_at = null,
        unmet_deps = 0  -- derived or counted apart (above)
    where t.id = any(v_reset);
    perform _queue_sync(v_reset || coalesce(v_blocked, '{}'));

    update runs r
    set tasks_finished = r.tasks_finished - v_finished,
        tasks_failed = r.tasks_failed - v_failed,
        tasks_cancelled = r.tasks_cancelled - v_cancelled
    where r.id = v_task.run_id;
    perform _notify('tasks_ready');
end
$$;
