-- orkstate schema, version 8: fan-in readiness without rewriting the task row (issue 14).
--
-- Version 6's package derives the readiness of a task with one dependency; a task with
-- several (a fan-in's join) still counted down tasks.unmet_deps, so each of its
-- dependencies' successes wrote a new version of its wide row (about 300 B of WAL per
-- success, often off the page with three index entries). From this version's package
-- on, such a task keeps unmet_deps = 0 on its row and its count lives here, in a row
-- of its own: a decrement is a HOT update of a 36-byte tuple (readiness.sql).
--
-- A task with no row here (none with an unmet dependency was ever counted here) has
-- nothing unmet. The rows are written at creation, by an operator's retry and by an
-- import, and only for tasks with something unmet.
--
-- Nine tenths of each page are left free: a decrement changes no indexed column, so with
-- room on its page it is HOT, and a join's dependencies succeed one after another, so
-- its dead versions pile up on its page until pruning (which other sessions' snapshots
-- hold back). TestFanInReadinessWAL (internal/bench), 50 joins of 98 dependencies,
-- twice each: fillfactor 50 made 72-76% of the decrements HOT, 10 made 93-96% HOT
-- (1-3% less WAL per success). A row per join, so the room costs little disk.
--
-- Rows written by an older package keep their count on the task row and count down as
-- before (nothing is rewritten going up). Going down, the older packages read
-- readiness from unmet_deps alone, so the down part writes the counts back there.
create table {{.schema}}.task_deps_unmet (
    task_id bigint primary key,
    unmet integer not null check (unmet >= 0)
) with (fillfactor = 10);

-- Deleting tasks (purge_runs, a workflow's cascade) removes their counts too. Each
-- of the trigger's deletes is a key probe per deleted task: version 5's
-- `task_id in (select id from deleted_tasks)` is a join the planner costs from the
-- tables' statistics, and with purge_runs' settings (no hash or merge join, no
-- sequential scan) and a queue whose statistics were taken nearly empty it walked all
-- of task_queue_pkey and compared each queue row with every deleted task: each purge
-- batch read the whole hot queue (auto_explain of a purge batch on an aged install;
-- docs/architecture.md, "Retention"; TestPurgeBatchReadsByKey).
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
update {{.schema}}.tasks t set unmet_deps = u.unmet
from {{.schema}}.task_deps_unmet u
where u.task_id = t.id and u.unmet > 0 and t.unmet_deps = 0;
drop table {{.schema}}.task_deps_unmet;
