-- _queue_sync makes task_queue agree with the given tasks' rows: a row for each task that
-- is pending with every dependency met (ready, ready_at = retry_at), dispatched (with its
-- lease) or running, and none for the others. Every function that changes a task's
-- status or unmet_deps calls it for the tasks it changed (claim_tasks keeps its own
-- rows), so the invariant lives here. Callers hold the tasks' row locks.
create function {{.schema}}_api._queue_sync(p_task_ids bigint[])
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
as $$
declare
    v_drop bigint[];
begin
    if coalesce(cardinality(p_task_ids), 0) = 0 then
        return;
    end if;
    -- Array-driven statements: each is an index probe per task whatever the planner
    -- believes about a young queue's size.
    select array_agg(t.id) into v_drop
    from tasks t
    where t.id = any(p_task_ids)
      and not ((t.status = 'pending' and t.unmet_deps = 0) or t.status in ('dispatched', 'running'));
    if v_drop is not null then
        delete from task_queue q where q.task_id = any(v_drop);
    end if;
    if v_drop is null or cardinality(v_drop) < cardinality(p_task_ids) then
        insert into task_queue as q (task_id, state, executor_type, ready_at, lease_expires_at, timeout_at)
        select t.id,
               case t.status when 'pending' then 'ready' else t.status end,
               t.executor_type,
               case when t.status = 'pending' then t.retry_at end,
               case when t.status = 'dispatched' then t.lease_expires_at end,
               t.timeout_at
        from tasks t
        where t.id = any(p_task_ids)
          and ((t.status = 'pending' and t.unmet_deps = 0) or t.status in ('dispatched', 'running'))
        on conflict (task_id) do update
        set state = excluded.state, ready_at = excluded.ready_at,
            lease_expires_at = excluded.lease_expires_at, timeout_at = excluded.timeout_at
        where (q.state, q.ready_at, q.lease_expires_at, q.timeout_at)
              is distinct from (excluded.state, excluded.ready_at, excluded.lease_expires_at, excluded.timeout_at);
    end if;
end
$$;
