-- orkstate schema, version 10: the tasks' delete trigger finds the rows it removes by key.
--
-- task_queue_forget_deleted_tasks (migrations 005 and 008) removed the queue, deadline, join-count and slot
-- rows of deleted tasks with `task_id in (select id from deleted_tasks)`, a join the
-- planner costs from the tables' statistics. Tasks are deleted by purge_runs, whose
-- settings (no hash or merge join, no sequential scan) the trigger inherits, and the
-- queue's statistics are usually of a moment it was nearly empty: the plan it chose
-- walked all of task_queue_pkey and compared each queue row with every deleted task
-- (auto_explain of a purge batch on an aged install; docs/architecture.md,
-- "Retention"). While claimers work, the queue holds every ready task, so each purge
-- batch read the whole hot queue. `= any(array(…))` is a key probe per deleted task
-- whatever the statistics say.

create or replace function {{.schema}}.task_queue_forget_deleted_tasks()
returns trigger
language plpgsql
set search_path = {{.schema}}, pg_temp
as $$
declare
    v_ids bigint[] := array(select d.id from deleted_tasks d);
begin
    delete from task_queue q where q.task_id = any(v_ids);
    delete from task_deadlines dl where dl.task_id = any(v_ids);
    delete from task_deps_unmet u where u.task_id = any(v_ids);
    -- a deleted in-flight task gives its slots back
    with gone as (
        delete from task_slots s where s.task_id = any(v_ids) returning s.slot_group
    ), per as (
        select p.pool, count(*)::integer as n
        from gone join slot_groups g on g.id = gone.slot_group
        cross join lateral (values (g.workflow_pool), (g.key_pool)) as p(pool)
        where p.pool <> 0
        group by p.pool
    )
    update slot_pools sp set in_flight = greatest(sp.in_flight - per.n, 0) from per where sp.id = per.pool;
    return null;
end
$$;

---- create above / drop below ----

create or replace function {{.schema}}.task_queue_forget_deleted_tasks()
returns trigger
language plpgsql
set search_path = {{.schema}}, pg_temp
as $$
begin
    delete from task_queue q where q.task_id in (select d.id from deleted_tasks d);
    delete from task_deadlines dl where dl.task_id in (select d.id from deleted_tasks d);
    delete from task_deps_unmet u where u.task_id in (select d.id from deleted_tasks d);
    -- a deleted in-flight task gives its slots back
    with gone as (
        delete from task_slots s where s.task_id in (select d.id from deleted_tasks d) returning s.slot_group
    ), per as (
        select p.pool, count(*)::integer as n
        from gone join slot_groups g on g.id = gone.slot_group
        cross join lateral (values (g.workflow_pool), (g.key_pool)) as p(pool)
        where p.pool <> 0
        group by p.pool
    )
    update slot_pools sp set in_flight = greatest(sp.in_flight - per.n, 0) from per where sp.id = per.pool;
    return null;
end
$$;
