-- orkstate schema, version 2: the task queue.
--
-- Version 1 found work through partial indexes on tasks (status, unmet_deps, lease,
-- timeout). Every status change then touched an indexed column, so no update of a task
-- was ever HOT: each claim, report and dependency decrement wrote a new entry into all
-- of tasks' indexes. task_queue is the narrow table of the tasks that are ready or in
-- flight — the only rows a claim or a sweep looks at — so tasks keeps only its key
-- indexes and its updates can stay on the page (HOT). A task is updated three or four
-- times in its life (a dependency's decrement, claim, running, success), so tasks now
-- leaves half of each page free for new versions (fillfactor 50; new pages only).
--
-- A row exists exactly while its task is pending with every dependency met (state
-- ready, ready_at = retry_at), dispatched (state dispatched, with its lease) or running
-- (state running). The functions of sql/functions keep it so; tasks stays the record.

alter table {{.schema}}.tasks set (fillfactor = 50);

create table {{.schema}}.task_queue (
    -- No foreign key: its check takes a KEY SHARE lock on the task row for every queue
    -- insert (measured: 24 ms → 11 ms for 1,000 inserts without it). The trigger below
    -- removes the rows of deleted tasks instead.
    task_id bigint primary key,
    state text not null check (state in ('ready', 'dispatched', 'running')),
    executor_type text not null default '',
    -- a retry's earliest dispatch time; null: now
    ready_at timestamptz,
    lease_expires_at timestamptz,
    timeout_at timestamptz
);
-- The claim scan: ready rows in dispatch order (task id).
create index task_queue_ready_idx on {{.schema}}.task_queue (task_id) where state = 'ready';
create index task_queue_lease_idx on {{.schema}}.task_queue (lease_expires_at) where state = 'dispatched';
create index task_queue_timeout_idx on {{.schema}}.task_queue (timeout_at) where timeout_at is not null;

-- Deleting tasks (a workflow's cascade) removes their queue rows, once per statement.
create function {{.schema}}.task_queue_forget_deleted_tasks()
returns trigger
language plpgsql
set search_path = {{.schema}}, pg_temp
as $$
begin
    delete from task_queue q where q.task_id in (select d.id from deleted_tasks d);
    return null;
end
$$;
create trigger task_queue_forget_deleted_tasks
    after delete on {{.schema}}.tasks
    referencing old table as deleted_tasks
    for each statement execute function {{.schema}}.task_queue_forget_deleted_tasks();

-- Upgrades keep every row: the queue is filled from the tasks that are in it by definition.
insert into {{.schema}}.task_queue (task_id, state, executor_type, ready_at, lease_expires_at, timeout_at)
select t.id,
       case t.status when 'pending' then 'ready' else t.status end,
       t.executor_type,
       case when t.status = 'pending' then t.retry_at end,
       case when t.status = 'dispatched' then t.lease_expires_at end,
       t.timeout_at
from {{.schema}}.tasks t
where (t.status = 'pending' and t.unmet_deps = 0) or t.status in ('dispatched', 'running');

drop index {{.schema}}.tasks_ready_idx;
drop index {{.schema}}.tasks_lease_idx;
drop index {{.schema}}.tasks_active_idx;

---- create above / drop below ----

alter table {{.schema}}.tasks set (fillfactor = 80);

create index tasks_ready_idx on {{.schema}}.tasks (id) where status = 'pending' and unmet_deps = 0;
create index tasks_lease_idx on {{.schema}}.tasks (lease_expires_at) where status = 'dispatched';
create index tasks_active_idx on {{.schema}}.tasks (timeout_at) where status in ('dispatched', 'running');
drop trigger task_queue_forget_deleted_tasks on {{.schema}}.tasks;
drop function {{.schema}}.task_queue_forget_deleted_tasks();
drop table {{.schema}}.task_queue;
