-- orkstate schema, version 1: the tables of docs/architecture.md ("Data model") in the install schema.
-- The schema name comes from tern's [data] schema (pgstore passes its own).
-- Functions live in the code package (sql/functions), in the schema {{.schema}}_api.

create schema {{.schema}};

-- One row: install-wide settings read by the functions.
create table {{.schema}}.settings (
    singleton boolean primary key default true check (singleton),
    -- NOTIFY takes a global lock at commit; installs where nobody listens turn it off.
    notify_enabled boolean not null default true
);
insert into {{.schema}}.settings default values;

create table {{.schema}}.workflows (
    id bigint generated always as identity primary key,
    name text not null unique check (name <> ''),
    description text not null default '',
    job_name text not null default '',
    region text not null default '',
    project text not null default '',
    executor_type text not null default '',
    task_params jsonb,
    schedule text not null default '',
    schedule_enabled boolean not null default false,
    last_scheduled_at timestamptz,
    next_scheduled_at timestamptz,
    current_snapshot_id bigint,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
-- Due schedules: a scan of enabled rows by next fire time.
create index workflows_due_idx on {{.schema}}.workflows (next_scheduled_at) where schedule_enabled;
-- Case-insensitive substring search of names.
create index workflows_lower_name_idx on {{.schema}}.workflows (lower(name) text_pattern_ops);

create table {{.schema}}.workflow_tasks (
    id bigint generated always as identity primary key,
    workflow_id bigint not null references {{.schema}}.workflows on delete cascade,
    task_index integer not null check (task_index >= 0),
    task_name text not null check (task_name <> ''),
    executor_type text not null default '',
    depends_on text[] not null default '{}',
    params jsonb,
    signature jsonb,
    max_retries integer not null default 0 check (max_retries >= 0),
    timeout_seconds integer not null default 0 check (timeout_seconds >= 0),
    created_at timestamptz not null default now(),
    unique (workflow_id, task_index),
    unique (workflow_id, task_name)
);

create table {{.schema}}.workflow_snapshots (
    id bigint generated always as identity primary key,
    workflow_id bigint not null references {{.schema}}.workflows on delete cascade,
    content_hash text not null,
    tasks_json jsonb not null check (jsonb_typeof(tasks_json) = 'array'),
    created_at timestamptz not null default now(),
    unique (workflow_id, content_hash)
);

alter table {{.schema}}.workflows
    add constraint workflows_current_snapshot_fk foreign key (current_snapshot_id)
    references {{.schema}}.workflow_snapshots on delete set null;

create table {{.schema}}.runs (
    id bigint generated always as identity primary key,
    workflow_id bigint not null references {{.schema}}.workflows on delete cascade,
    snapshot_id bigint references {{.schema}}.workflow_snapshots on delete set null,
    status text not null default 'pending'
        check (status in ('pending', 'running', 'paused', 'success', 'failed', 'cancelled')),
    triggered_by text not null default '',
    error text not null default '',
    -- Per-run counters make completion O(1): the run finishes when tasks_finished = tasks_total.
    tasks_total integer not null default 0 check (tasks_total >= 0),
    tasks_finished integer not null default 0 check (tasks_finished >= 0),
    tasks_failed integer not null default 0 check (tasks_failed >= 0),
    tasks_cancelled integer not null default 0 check (tasks_cancelled >= 0),
    created_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz
);
create index runs_workflow_idx on {{.schema}}.runs (workflow_id, id desc);
create index runs_status_idx on {{.schema}}.runs (status, id);
-- start_pending_runs claims from here, oldest first.
create index runs_pending_idx on {{.schema}}.runs (id) where status = 'pending';

create table {{.schema}}.tasks (
    id bigint generated always as identity primary key,
    run_id bigint not null references {{.schema}}.runs on delete cascade,
    task_index integer not null check (task_index >= 0),
    task_name text not null check (task_name <> ''),
    executor_type text not null default '',
    depends_on text[] not null default '{}',
    status text not null default 'pending'
        check (status in ('pending', 'paused', 'dispatched', 'running', 'success', 'failed', 'cancelled')),
    execution_name text not null default '',
    params jsonb,
    output jsonb,
    error text not null default '',
    -- attempts counts claims; the value a claim returns is the fencing token of that attempt.
    attempts integer not null default 0 check (attempts >= 0),
    max_retries integer not null default 0 check (max_retries >= 0),
    timeout_seconds integer not null default 0 check (timeout_seconds >= 0),
    retry_at timestamptz,
    -- Readiness is pushed, not scanned: the count of dependencies not yet succeeded,
    -- decremented by the statement that marks an upstream task successful.
    unmet_deps integer not null default 0 check (unmet_deps >= 0),
    -- ids of the tasks that depend on this one, so propagation is O(fan-out).
    downstream bigint[] not null default '{}',
    claimed_by text not null default '',
    lease_expires_at timestamptz,
    -- when a dispatched or running task times out (from started_at, else dispatched_at).
    timeout_at timestamptz,
    created_at timestamptz not null default now(),
    dispatched_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    unique (run_id, task_index),
    unique (run_id, task_name)
) with (fillfactor = 80);
-- The claim index: exactly the dispatchable predicate minus retry_at, in dispatch order.
-- Run state is folded into task status (pausing a run pauses its pending tasks), so
-- the claim needs no join and its cost does not grow with blocked tasks.
create index tasks_ready_idx on {{.schema}}.tasks (id) where status = 'pending' and unmet_deps = 0;
create index tasks_lease_idx on {{.schema}}.tasks (lease_expires_at) where status = 'dispatched';
create index tasks_active_idx on {{.schema}}.tasks (timeout_at) where status in ('dispatched', 'running');

-- Logs are chunks appended as rows: an append costs O(chunk), not O(log so far).
create table {{.schema}}.task_logs (
    id bigint generated always as identity primary key,
    task_id bigint not null references {{.schema}}.tasks on delete cascade,
    chunk text not null,
    created_at timestamptz not null default now()
);
create index task_logs_task_idx on {{.schema}}.task_logs (task_id, id);
-- Running total per task, so the cap is checked without summing the log.
create table {{.schema}}.task_log_sizes (
    task_id bigint primary key references {{.schema}}.tasks on delete cascade,
    bytes bigint not null default 0
);

create table {{.schema}}.deferred_jobs (
    id bigint generated always as identity primary key,
    task_id bigint not null references {{.schema}}.tasks on delete cascade,
    service_type text not null check (service_type <> ''),
    job_id text not null check (job_id <> ''),
    job_data jsonb,
    status text not null default 'pending'
        check (status in ('pending', 'polling', 'completed', 'failed', 'cancelled')),
    error text not null default '',
    -- attempts counts claims; a poll report carrying an older one is stale.
    attempts integer not null default 0,
    claimed_by text not null default '',
    lease_expires_at timestamptz,
    next_poll_at timestamptz not null default now(),
    created_at timestamptz not null default now(),
    started_at timestamptz,
    last_polled_at timestamptz,
    finished_at timestamptz
);
create index deferred_jobs_task_idx on {{.schema}}.deferred_jobs (task_id);
create index deferred_jobs_due_idx on {{.schema}}.deferred_jobs (next_poll_at, id) where status in ('pending', 'polling');

---- create above / drop below ----

-- The function package's schema goes only when this install's package created it (its
-- comment says so), and without CASCADE: an object outside the package that uses one of
-- its functions stops the removal and is named. (Rewritten after release: a down part
-- runs from the current file, so this guards existing installs too.)
do $down$
declare
    v_api constant text := $schema${{.schema}}_api$schema$;
    v_marker constant text := 'orkstate functions of the install ' || $schema${{.schema}}$schema$;
    v_nsp oid;
    v_comment text;
    v_routines text;
    v_detail text;
begin
    select n.oid, obj_description(n.oid, 'pg_namespace') into v_nsp, v_comment
    from pg_catalog.pg_namespace n where n.nspname = v_api;
    if v_nsp is null then
        return;
    end if;
    if not coalesce(v_comment = v_marker or starts_with(v_comment, v_marker || ' ')
                    or starts_with(v_comment, v_marker || ';'), false) then
        raise notice 'orkstate: schema % is not the function package of this install; left as it is', v_api;
        return;
    end if;
    select string_agg(p.oid::regprocedure::text, ', ') into v_routines
    from pg_catalog.pg_proc p where p.pronamespace = v_nsp;
    begin
        if v_routines is not null then
            execute 'drop routine ' || v_routines;
        end if;
        execute format('drop schema %I', v_api);
    exception when dependent_objects_still_exist then
        get stacked diagnostics v_detail = pg_exception_detail;
        raise exception using errcode = 'dependent_objects_still_exist',
            message = format('orkstate: cannot remove %I: objects outside the package depend on it: %s',
                             v_api, replace(v_detail, e'\n', '; ')),
            hint = 'Drop those objects first; the removal drops nothing of the package schema with CASCADE.';
    end;
end
$down$;
drop schema {{.schema}} cascade;
