-- expire_task_leases returns up to p_limit dispatched tasks whose lease ran out to
-- pending (the attempt is not counted as a failure; the next claim increments it, so
-- the old claimer's late report is stale). Returns one row per task, like set_task_states.
create function {{.schema}}_api.expire_task_leases(p_limit integer)
returns table (ord integer, task_id bigint, outcome text, status text)
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
as $$
#variable_conflict use_column
declare
    v_ids bigint[];
    v_attempts integer[];
    n integer;
begin
    perform _check_limit(p_limit);
    -- Locked here and fenced by attempt below: a report racing the expiry wins or loses whole.
    select array_agg(x.id order by x.id), array_agg(x.attempts order by x.id) into v_ids, v_attempts
    from (
        select t.id, t.attempts
        from task_queue q join tasks t on t.id = q.task_id
        where q.state = 'dispatched' and q.lease_expires_at <= now()
        order by q.lease_expires_at
        limit p_limit
        for no key update skip locked
    ) x;
    n := coalesce(cardinality(v_ids), 0);
    if n = 0 then
        return;
    end if;
    return query select * from _change_tasks(
        v_ids, array_fill('pending'::text, array[n]), array_fill('lease expired'::text, array[n]), v_attempts);
end
$$;

-- fail_timed_out_tasks fails up to p_limit dispatched or running tasks past their
-- timeout (timeout_seconds from started_at, else dispatched_at) with error
-- 'timeout after Ns', under the retry rule; their deferred jobs are cancelled.
create function {{.schema}}_api.fail_timed_out_tasks(p_limit integer)
returns table (ord integer, task_id bigint, outcome text, status text)
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
as $$
#variable_conflict use_column
declare
    v_ids bigint[];
    v_attempts integer[];
    v_errors text[];
    n integer;
begin
    perform _check_limit(p_limit);
    select array_agg(x.id order by x.id), array_agg(x.attempts order by x.id),
           array_agg(format('timeout after %ss', x.timeout_seconds) order by x.id)
    into v_ids, v_attempts, v_errors
    from (
        select t.id, t.attempts, t.timeout_seconds
        from task_queue q join tasks t on t.id = q.task_id
        where q.timeout_at <= now() and q.state in ('dispatched', 'running')
        order by q.timeout_at
        limit p_limit
        for no key update skip locked
    ) x;
    n := coalesce(cardinality(v_ids), 0);
    if n = 0 then
        return;
    end if;
    return query select * from _change_tasks(v_ids, array_fill('failed'::text, array[n]), v_errors, v_attempts);
end
$$;
