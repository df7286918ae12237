-- orkstate schema, version 5: priorities, concurrency limits and fairness (issue 13).
--
--   workflows.priority           the default priority of the workflow's tasks (-1000 … 1000;
--                                higher is claimed first)
--   workflows.max_active_runs    at most this many running or paused runs (null: no limit);
--                                start_pending_runs leaves the others pending, in order
--   workflows.fair               round-robin between the workflow's runs instead of id order
--   tasks.priority               the task's priority (its spec's, else its workflow's)
--   tasks.priority_override      the spec's priority, if it set one (a workflow's new
--                                priority then leaves the task alone)
--   tasks.concurrency_key        the key named by the task's spec ('' for none)
--   tasks.slot_group             the task's slot group (0: no pool and no fairness)
--
-- A slot pool is a counter of tasks in flight with a limit: one per concurrency key
-- (set_concurrency_key) and one per workflow with a max tasks in flight
-- (set_workflow_limits). A slot group is the set of pools a task counts against plus,
-- for a fair workflow, its run: the ready tasks of one group form one ordered list in
-- task_queue_group_idx, so a claim reads a group only while all its pools have free
-- slots, and never the tasks a full pool holds back. task_slots has a row per
-- in-flight task that holds slots; the claim inserts it and takes the slots, and every
-- way a task leaves flight deletes it and gives them back (_release_slots).

alter table {{.schema}}.workflows
    add column priority smallint not null default 0 check (priority between -1000 and 1000),
    add column max_active_runs integer check (max_active_runs > 0),
    add column fair boolean not null default false;

alter table {{.schema}}.tasks
    add column priority smallint not null default 0,
    add column priority_override smallint,
    add column concurrency_key text not null default '',
    add column slot_group bigint not null default 0;

alter table {{.schema}}.snapshot_tasks
    add column priority smallint,
    add column concurrency_key text not null default '';

-- a workflow's compiled tasks carry them too (null priority: the workflow's)
alter table {{.schema}}.workflow_tasks
    add column priority smallint check (priority between -1000 and 1000),
    add column concurrency_key text not null default '';

create table {{.schema}}.slot_pools (
    id bigint generated always as identity primary key,
    -- exactly one of: a workflow's pool (max tasks in flight), a concurrency key's pool
    workflow_id bigint unique references {{.schema}}.workflows on delete cascade,
    key text unique check (key <> ''),
    -- null: no limit (the pool still counts, so a limit set later starts from the truth)
    slots integer check (slots > 0),
    in_flight integer not null default 0 check (in_flight >= 0),
    check ((workflow_id is null) <> (key is null))
);

create table {{.schema}}.slot_groups (
    id bigint generated always as identity primary key,
    -- 0: none
    workflow_pool bigint not null default 0,
    key_pool bigint not null default 0,
    fair_run bigint not null default 0,
    unique (workflow_pool, key_pool, fair_run)
);

create table {{.schema}}.task_slots (
    -- No foreign key, as for task_queue: the check would lock the task row per insert.
    task_id bigint primary key,
    slot_group bigint not null
);

alter table {{.schema}}.task_queue
    add column priority smallint not null default 0,
    add column slot_group bigint not null default 0;
-- The claim scan of the tasks without a group: priority first, then dispatch order.
create index task_queue_order_idx on {{.schema}}.task_queue (priority desc, task_id) where slot_group = 0;
-- One ordered list per group; the claim reads the head of each group whose pools have room.
create index task_queue_group_idx on {{.schema}}.task_queue (slot_group, priority desc, task_id) where slot_group <> 0;

-- max_active_runs counts these.
create index runs_active_idx on {{.schema}}.runs (workflow_id) where status in ('running', 'paused');

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

---- create above / drop below ----

-- Rows are carried back: version 3 has no priorities, groups or slots; every ready
-- task keeps its queue row (the columns go), in-flight tasks keep their leases.
create or replace function {{.schema}}.task_queue_forget_deleted_tasks()
returns trigger
language plpgsql
set search_path = {{.schema}}, pg_temp
as $$
begin
    delete from task_queue q where q.task_id in (select d.id from deleted_tasks d);
    delete from task_deadlines dl where dl.task_id in (select d.id from deleted_tasks d);
    return null;
end
$$;
drop index {{.schema}}.runs_active_idx;
drop index {{.schema}}.task_queue_group_idx;
drop index {{.schema}}.task_queue_order_idx;
alter table {{.schema}}.task_queue drop column slot_group, drop column priority;
drop table {{.schema}}.task_slots;
drop table {{.schema}}.slot_groups;
drop table {{.schema}}.slot_pools;
alter table {{.schema}}.snapshot_tasks drop column concurrency_key, drop column priority;
alter table {{.schema}}.workflow_tasks drop column concurrency_key, drop column priority;
alter table {{.schema}}.tasks
    drop column slot_group, drop column concurrency_key, drop column priority_override, drop column priority;
alter table {{.schema}}.workflows drop column fair, drop column max_active_runs, drop column priority;
