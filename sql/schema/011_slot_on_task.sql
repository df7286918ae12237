-- orkstate schema, version 11: a task's slot is recorded on its own row (issue 13).
--
-- Version 5 kept a task_slots row per in-flight task that held slots: the claim
-- inserted it and whoever moved the task out of flight deleted it, and that delete
-- decided who gave the slot back. A claim of 1,000 keyed tasks inserted 1,000 rows
-- (2,003 WAL records, 137 kB of the claim's 457 kB) and a report of them deleted
-- 1,000. From this version's package on, the task row says it, in a column the claim's
-- update and the state machine's update write anyway (no index holds it, so the
-- updates stay HOT):
--
--   tasks.slot_hold   bit 1: the task holds its slot group's slots now (it is
--                     dispatched or running and in a group);
--                     bit 2: it held them before the row's last change of them
--                     (so the updating statement's RETURNING tells what it changed:
--                     1 took them, 2 gave them back, 3 kept them).
--
-- Whoever clears bit 1 gives the slots back; the row is locked by that update, so
-- exactly one statement does it (slots.sql). Tasks holding slots now get bit 1.
--
-- The package of version 10 writes task_slots and this one reads slot_hold: between
-- this migration and the package's install (one Migrate) an older package's claims
-- of grouped tasks and its reports fail on the missing table rather than miscount.
alter table {{.schema}}.tasks add column slot_hold smallint not null default 0;

update {{.schema}}.tasks t set slot_hold = 1
from {{.schema}}.task_slots s
where s.task_id = t.id;

drop table {{.schema}}.task_slots;

-- Deleting tasks gives back the slots the deleted ones held (version 8's trigger, with
-- the slots read from the deleted rows instead of task_slots).
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
        select d.slot_group from deleted_tasks d where d.slot_hold & 1 = 1 and d.slot_group <> 0
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

create table {{.schema}}.task_slots (
    -- No foreign key, as for task_queue: the check would lock the task row per insert.
    task_id bigint primary key,
    slot_group bigint not null
);

-- version 5's rows: only the tasks of groups with a pool had one
insert into {{.schema}}.task_slots (task_id, slot_group)
select t.id, t.slot_group
from {{.schema}}.tasks t join {{.schema}}.slot_groups g on g.id = t.slot_group
where t.slot_hold & 1 = 1 and (g.workflow_pool <> 0 or g.key_pool <> 0);

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

alter table {{.schema}}.tasks drop column slot_hold;
