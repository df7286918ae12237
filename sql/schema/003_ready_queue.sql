-- orkstate schema, version 3: task_queue holds only ready tasks; snapshots are compiled
-- once for their runs (snapshot_tasks, at the end of this file's create part).
--
-- In version 2 a claim updated each task's queue row from ready to dispatched. That
-- update moved the row from the ready index into the lease index, so it could not be
-- HOT: about 6 ms of a 14 ms claim of 1,000 tasks. Now a claim deletes the queue rows
-- it takes (a delete writes no new row and no index entry), and what the sweeps need
-- to find in-flight tasks lives in two small tables:
--
--   task_leases     one row per claim call: its tasks' ids, as ranges (a claim takes
--                   ids in order, so a batch is a range or a few: a small value where
--                   an array of 1,000 ids went to TOAST and cost ~1 ms per claim),
--                   and the time their lease ends. expire_task_leases reads the rows that are due, expires the
--                   tasks that are still dispatched under an ended lease, and deletes
--                   the rows it has dealt with. A row outlives the tasks it names:
--                   nothing is written when a claimed task finishes.
--   task_deadlines  one row per in-flight task that has a timeout (timeout_seconds >
--                   0) — none for the others, so tasks without a timeout pay nothing.
--
-- tasks stays the record: a lease row only says where to look, and every sweep checks
-- the task's own status, lease and attempt under its row lock.

create table {{.schema}}.task_leases (
    id bigint generated always as identity primary key,
    expires_at timestamptz not null,
    task_ids int8multirange not null
);
create index task_leases_expires_idx on {{.schema}}.task_leases (expires_at);

create table {{.schema}}.task_deadlines (
    -- No foreign key, as for task_queue: the check would lock the task row per insert.
    task_id bigint primary key,
    timeout_at timestamptz not null
);
create index task_deadlines_due_idx on {{.schema}}.task_deadlines (timeout_at);

-- Upgrades keep every lease and deadline: in-flight queue rows become lease rows (one
-- per lease end, as a claim would have written them) and deadline rows.
insert into {{.schema}}.task_leases (expires_at, task_ids)
select q.lease_expires_at, range_agg(int8range(q.task_id, q.task_id, '[]'))
from {{.schema}}.task_queue q
where q.state = 'dispatched' and q.lease_expires_at is not null
group by q.lease_expires_at;
insert into {{.schema}}.task_deadlines (task_id, timeout_at)
select q.task_id, q.timeout_at
from {{.schema}}.task_queue q
where q.state in ('dispatched', 'running') and q.timeout_at is not null;
delete from {{.schema}}.task_queue where state <> 'ready';

-- Every row is ready now: the primary key is the dispatch order, so the partial ready
-- index and the state column go, and each queue insert maintains one index, not two.
drop index {{.schema}}.task_queue_ready_idx;
drop index {{.schema}}.task_queue_lease_idx;
drop index {{.schema}}.task_queue_timeout_idx;
alter table {{.schema}}.task_queue
    drop column state,
    drop column lease_expires_at,
    drop column timeout_at;

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

-- A snapshot's DAG compiled once, by the first run that starts from it: one row per
-- task with its unmet-dependency count and its dependents by position. Later runs of
-- the snapshot insert their tasks straight from these rows — no JSON to parse, no DAG
-- to check again (snapshots are immutable: created, or found by content hash, never
-- changed).
create table {{.schema}}.snapshot_tasks (
    snapshot_id bigint not null references {{.schema}}.workflow_snapshots on delete cascade,
    pos integer not null,
    task_index integer not null,
    task_name text not null,
    executor_type text not null,
    depends_on text[] not null,
    params jsonb,
    max_retries integer not null,
    timeout_seconds integer not null,
    unmet_deps integer not null,
    downstream_pos integer[] not null,
    primary key (snapshot_id, pos)
);

---- create above / drop below ----

drop table {{.schema}}.snapshot_tasks;

create or replace function {{.schema}}.task_queue_forget_deleted_tasks()
returns trigger
language plpgsql
set search_path = {{.schema}}, pg_temp
as $$
begin
    delete from task_queue q where q.task_id in (select d.id from deleted_tasks d);
    return null;
end
$$;

alter table {{.schema}}.task_queue
    add column state text not null default 'ready' check (state in ('ready', 'dispatched', 'running')),
    add column lease_expires_at timestamptz,
    add column timeout_at timestamptz;
alter table {{.schema}}.task_queue alter column state drop default;
insert into {{.schema}}.task_queue (task_id, state, executor_type, lease_expires_at, timeout_at)
select t.id, t.status, t.executor_type,
       case when t.status = 'dispatched' then t.lease_expires_at end, t.timeout_at
from {{.schema}}.tasks t
where t.status in ('dispatched', 'running');
create index task_queue_ready_idx on {{.schema}}.task_queue (task_id) where state = 'ready';
create index task_queue_lease_idx on {{.schema}}.task_queue (lease_expires_at) where state = 'dispatched';
create index task_queue_timeout_idx on {{.schema}}.task_queue (timeout_at) where timeout_at is not null;
drop table {{.schema}}.task_deadlines;
drop table {{.schema}}.task_leases;
