-- orkstate's schema at a glance: pg_dump --schema-only of a fresh install's schema (ork),
-- what sql/schema's migrations make; the functions are in sql/functions. Normalised by
-- sql/schema_test.go. Generated; do not edit:
--   go test ./sql -run TestSchemaDump -update

CREATE SCHEMA ork;

CREATE FUNCTION ork.task_queue_forget_deleted_tasks() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'ork', 'pg_temp'
    AS $$
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

CREATE FUNCTION ork.tasks_forget_deleted_runs() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'ork', 'pg_temp'
    AS $$
declare
    v_ids bigint[] := array(select d.id from deleted_runs d);
begin
    delete from tasks t where t.run_id = any(v_ids);
    return null;
end
$$;

CREATE TABLE ork.deferred_jobs (
    id bigint NOT NULL,
    task_id bigint NOT NULL,
    service_type text NOT NULL,
    job_id text NOT NULL,
    job_data jsonb,
    status text DEFAULT 'pending'::text NOT NULL,
    error text DEFAULT ''::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    claimed_by text DEFAULT ''::text NOT NULL,
    lease_expires_at timestamp with time zone,
    next_poll_at timestamp with time zone DEFAULT now() NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    last_polled_at timestamp with time zone,
    finished_at timestamp with time zone,
    CONSTRAINT deferred_jobs_job_id_check CHECK ((job_id <> ''::text)),
    CONSTRAINT deferred_jobs_service_type_check CHECK ((service_type <> ''::text)),
    CONSTRAINT deferred_jobs_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'polling'::text, 'completed'::text, 'failed'::text, 'cancelled'::text])))
);

CREATE TABLE ork.tasks (
    id bigint NOT NULL,
    run_id bigint NOT NULL,
    task_index integer NOT NULL,
    task_name text NOT NULL,
    executor_type text DEFAULT ''::text NOT NULL,
    depends_on text[] DEFAULT '{}'::text[] NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    execution_name text DEFAULT ''::text NOT NULL,
    params jsonb,
    output jsonb,
    error text DEFAULT ''::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    max_retries integer DEFAULT 0 NOT NULL,
    timeout_seconds integer DEFAULT 0 NOT NULL,
    retry_at timestamp with time zone,
    unmet_deps integer DEFAULT 0 NOT NULL,
    downstream bigint[] DEFAULT '{}'::bigint[] NOT NULL,
    claimed_by text DEFAULT ''::text NOT NULL,
    lease_expires_at timestamp with time zone,
    timeout_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    dispatched_at timestamp with time zone,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    priority smallint DEFAULT 0 NOT NULL,
    priority_override smallint,
    concurrency_key text DEFAULT ''::text NOT NULL,
    slot_group bigint DEFAULT 0 NOT NULL,
    slot_hold smallint DEFAULT 0 NOT NULL,
    CONSTRAINT tasks_attempts_check CHECK ((attempts >= 0)),
    CONSTRAINT tasks_max_retries_check CHECK ((max_retries >= 0)),
    CONSTRAINT tasks_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'paused'::text, 'dispatched'::text, 'running'::text, 'success'::text, 'failed'::text, 'cancelled'::text]))),
    CONSTRAINT tasks_task_index_check CHECK ((task_index >= 0)),
    CONSTRAINT tasks_task_name_check CHECK ((task_name <> ''::text)),
    CONSTRAINT tasks_timeout_seconds_check CHECK ((timeout_seconds >= 0)),
    CONSTRAINT tasks_unmet_deps_check CHECK ((unmet_deps >= 0))
)
WITH (fillfactor='50');

CREATE TABLE ork.runs (
    id bigint NOT NULL,
    workflow_id bigint NOT NULL,
    snapshot_id bigint,
    status text DEFAULT 'pending'::text NOT NULL,
    triggered_by text DEFAULT ''::text NOT NULL,
    error text DEFAULT ''::text NOT NULL,
    tasks_total integer DEFAULT 0 NOT NULL,
    tasks_finished integer DEFAULT 0 NOT NULL,
    tasks_failed integer DEFAULT 0 NOT NULL,
    tasks_cancelled integer DEFAULT 0 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    CONSTRAINT runs_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'running'::text, 'paused'::text, 'success'::text, 'failed'::text, 'cancelled'::text]))),
    CONSTRAINT runs_tasks_cancelled_check CHECK ((tasks_cancelled >= 0)),
    CONSTRAINT runs_tasks_failed_check CHECK ((tasks_failed >= 0)),
    CONSTRAINT runs_tasks_finished_check CHECK ((tasks_finished >= 0)),
    CONSTRAINT runs_tasks_total_check CHECK ((tasks_total >= 0))
)
WITH (fillfactor='50');

ALTER TABLE ork.deferred_jobs ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME ork.deferred_jobs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

ALTER TABLE ork.runs ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME ork.runs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE ork.settings (
    singleton boolean DEFAULT true NOT NULL,
    notify_enabled boolean DEFAULT true NOT NULL,
    CONSTRAINT settings_singleton_check CHECK (singleton)
);

CREATE TABLE ork.slot_groups (
    id bigint NOT NULL,
    workflow_pool bigint DEFAULT 0 NOT NULL,
    key_pool bigint DEFAULT 0 NOT NULL,
    fair_run bigint DEFAULT 0 NOT NULL
);

ALTER TABLE ork.slot_groups ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME ork.slot_groups_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE ork.slot_pools (
    id bigint NOT NULL,
    workflow_id bigint,
    key text,
    slots integer,
    in_flight integer DEFAULT 0 NOT NULL,
    CONSTRAINT slot_pools_check CHECK (((workflow_id IS NULL) <> (key IS NULL))),
    CONSTRAINT slot_pools_in_flight_check CHECK ((in_flight >= 0)),
    CONSTRAINT slot_pools_key_check CHECK ((key <> ''::text)),
    CONSTRAINT slot_pools_key_slots_check CHECK (((key IS NULL) OR (slots IS NOT NULL))),
    CONSTRAINT slot_pools_slots_check CHECK ((slots > 0))
);

ALTER TABLE ork.slot_pools ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME ork.slot_pools_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE ork.snapshot_tasks (
    snapshot_id bigint NOT NULL,
    pos integer NOT NULL,
    task_index integer NOT NULL,
    task_name text NOT NULL,
    executor_type text NOT NULL,
    depends_on text[] NOT NULL,
    params jsonb,
    max_retries integer NOT NULL,
    timeout_seconds integer NOT NULL,
    unmet_deps integer NOT NULL,
    downstream_pos integer[] NOT NULL,
    priority smallint,
    concurrency_key text DEFAULT ''::text NOT NULL
);

CREATE TABLE ork.task_deadlines (
    task_id bigint NOT NULL,
    timeout_at timestamp with time zone NOT NULL
);

CREATE TABLE ork.task_deps_unmet (
    task_id bigint NOT NULL,
    unmet integer NOT NULL,
    CONSTRAINT task_deps_unmet_unmet_check CHECK ((unmet >= 0))
)
WITH (fillfactor='10');

CREATE TABLE ork.task_leases (
    id bigint NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    task_ids int8multirange NOT NULL
);

ALTER TABLE ork.task_leases ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME ork.task_leases_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE ork.task_log_sizes (
    task_id bigint NOT NULL,
    bytes bigint DEFAULT 0 NOT NULL
);

CREATE TABLE ork.task_logs (
    id bigint NOT NULL,
    task_id bigint NOT NULL,
    chunk text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE ork.task_logs ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME ork.task_logs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE ork.task_queue (
    task_id bigint NOT NULL,
    executor_type text DEFAULT ''::text NOT NULL,
    ready_at timestamp with time zone,
    priority smallint DEFAULT 0 NOT NULL,
    slot_group bigint DEFAULT 0 NOT NULL
);

ALTER TABLE ork.tasks ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME ork.tasks_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE ork.workflow_snapshots (
    id bigint NOT NULL,
    workflow_id bigint NOT NULL,
    content_hash text NOT NULL,
    tasks_json jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT workflow_snapshots_tasks_json_check CHECK ((jsonb_typeof(tasks_json) = 'array'::text))
);

ALTER TABLE ork.workflow_snapshots ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME ork.workflow_snapshots_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE ork.workflow_tasks (
    id bigint NOT NULL,
    workflow_id bigint NOT NULL,
    task_index integer NOT NULL,
    task_name text NOT NULL,
    executor_type text DEFAULT ''::text NOT NULL,
    depends_on text[] DEFAULT '{}'::text[] NOT NULL,
    params jsonb,
    signature jsonb,
    max_retries integer DEFAULT 0 NOT NULL,
    timeout_seconds integer DEFAULT 0 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    priority smallint,
    concurrency_key text DEFAULT ''::text NOT NULL,
    CONSTRAINT workflow_tasks_max_retries_check CHECK ((max_retries >= 0)),
    CONSTRAINT workflow_tasks_priority_check CHECK (((priority >= '-1000'::integer) AND (priority <= 1000))),
    CONSTRAINT workflow_tasks_task_index_check CHECK ((task_index >= 0)),
    CONSTRAINT workflow_tasks_task_name_check CHECK ((task_name <> ''::text)),
    CONSTRAINT workflow_tasks_timeout_seconds_check CHECK ((timeout_seconds >= 0))
);

ALTER TABLE ork.workflow_tasks ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME ork.workflow_tasks_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE ork.workflows (
    id bigint NOT NULL,
    name text NOT NULL,
    description text DEFAULT ''::text NOT NULL,
    job_name text DEFAULT ''::text NOT NULL,
    region text DEFAULT ''::text NOT NULL,
    project text DEFAULT ''::text NOT NULL,
    executor_type text DEFAULT ''::text NOT NULL,
    task_params jsonb,
    schedule text DEFAULT ''::text NOT NULL,
    schedule_enabled boolean DEFAULT false NOT NULL,
    last_scheduled_at timestamp with time zone,
    next_scheduled_at timestamp with time zone,
    current_snapshot_id bigint,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    priority smallint DEFAULT 0 NOT NULL,
    max_active_runs integer,
    fair boolean DEFAULT false NOT NULL,
    CONSTRAINT workflows_max_active_runs_check CHECK ((max_active_runs > 0)),
    CONSTRAINT workflows_name_check CHECK ((name <> ''::text)),
    CONSTRAINT workflows_priority_check CHECK (((priority >= '-1000'::integer) AND (priority <= 1000)))
);

ALTER TABLE ork.workflows ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME ork.workflows_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

ALTER TABLE ONLY ork.deferred_jobs
    ADD CONSTRAINT deferred_jobs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY ork.runs
    ADD CONSTRAINT runs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY ork.settings
    ADD CONSTRAINT settings_pkey PRIMARY KEY (singleton);

ALTER TABLE ONLY ork.slot_groups
    ADD CONSTRAINT slot_groups_pkey PRIMARY KEY (id);

ALTER TABLE ONLY ork.slot_groups
    ADD CONSTRAINT slot_groups_workflow_pool_key_pool_fair_run_key UNIQUE (workflow_pool, key_pool, fair_run);

ALTER TABLE ONLY ork.slot_pools
    ADD CONSTRAINT slot_pools_key_key UNIQUE (key);

ALTER TABLE ONLY ork.slot_pools
    ADD CONSTRAINT slot_pools_pkey PRIMARY KEY (id);

ALTER TABLE ONLY ork.slot_pools
    ADD CONSTRAINT slot_pools_workflow_id_key UNIQUE (workflow_id);

ALTER TABLE ONLY ork.snapshot_tasks
    ADD CONSTRAINT snapshot_tasks_pkey PRIMARY KEY (snapshot_id, pos);

ALTER TABLE ONLY ork.task_deadlines
    ADD CONSTRAINT task_deadlines_pkey PRIMARY KEY (task_id);

ALTER TABLE ONLY ork.task_deps_unmet
    ADD CONSTRAINT task_deps_unmet_pkey PRIMARY KEY (task_id);

ALTER TABLE ONLY ork.task_leases
    ADD CONSTRAINT task_leases_pkey PRIMARY KEY (id);

ALTER TABLE ONLY ork.task_log_sizes
    ADD CONSTRAINT task_log_sizes_pkey PRIMARY KEY (task_id);

ALTER TABLE ONLY ork.task_logs
    ADD CONSTRAINT task_logs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY ork.task_queue
    ADD CONSTRAINT task_queue_pkey PRIMARY KEY (task_id);

ALTER TABLE ONLY ork.tasks
    ADD CONSTRAINT tasks_pkey PRIMARY KEY (id);

ALTER TABLE ONLY ork.tasks
    ADD CONSTRAINT tasks_run_id_task_index_key UNIQUE (run_id, task_index);

ALTER TABLE ONLY ork.tasks
    ADD CONSTRAINT tasks_run_id_task_name_key UNIQUE (run_id, task_name);

ALTER TABLE ONLY ork.workflow_snapshots
    ADD CONSTRAINT workflow_snapshots_pkey PRIMARY KEY (id);

ALTER TABLE ONLY ork.workflow_snapshots
    ADD CONSTRAINT workflow_snapshots_workflow_id_content_hash_key UNIQUE (workflow_id, content_hash);

ALTER TABLE ONLY ork.workflow_tasks
    ADD CONSTRAINT workflow_tasks_pkey PRIMARY KEY (id);

ALTER TABLE ONLY ork.workflow_tasks
    ADD CONSTRAINT workflow_tasks_workflow_id_task_index_key UNIQUE (workflow_id, task_index);

ALTER TABLE ONLY ork.workflow_tasks
    ADD CONSTRAINT workflow_tasks_workflow_id_task_name_key UNIQUE (workflow_id, task_name);

ALTER TABLE ONLY ork.workflows
    ADD CONSTRAINT workflows_name_key UNIQUE (name);

ALTER TABLE ONLY ork.workflows
    ADD CONSTRAINT workflows_pkey PRIMARY KEY (id);

CREATE INDEX deferred_jobs_due_idx ON ork.deferred_jobs USING btree (next_poll_at, id) WHERE (status = ANY (ARRAY['pending'::text, 'polling'::text]));

CREATE INDEX deferred_jobs_task_idx ON ork.deferred_jobs USING btree (task_id);

CREATE INDEX runs_active_idx ON ork.runs USING btree (workflow_id) WHERE (status = ANY (ARRAY['running'::text, 'paused'::text]));

CREATE INDEX runs_finished_idx ON ork.runs USING btree (finished_at, id) WHERE (status = ANY (ARRAY['success'::text, 'failed'::text, 'cancelled'::text]));

CREATE INDEX runs_pending_idx ON ork.runs USING btree (id) WHERE (status = 'pending'::text);

CREATE INDEX runs_status_idx ON ork.runs USING btree (status, id);

CREATE INDEX runs_workflow_idx ON ork.runs USING btree (workflow_id, id DESC);

CREATE INDEX slot_groups_fair_run_idx ON ork.slot_groups USING btree (fair_run) WHERE (fair_run <> 0);

CREATE INDEX task_deadlines_due_idx ON ork.task_deadlines USING btree (timeout_at);

CREATE INDEX task_leases_expires_idx ON ork.task_leases USING btree (expires_at);

CREATE INDEX task_logs_task_idx ON ork.task_logs USING btree (task_id, id);

CREATE INDEX task_queue_group_idx ON ork.task_queue USING btree (slot_group, priority DESC, task_id) WHERE (slot_group <> 0);

CREATE INDEX task_queue_order_idx ON ork.task_queue USING btree (priority DESC, task_id) WHERE (slot_group = 0);

CREATE INDEX workflows_due_idx ON ork.workflows USING btree (next_scheduled_at) WHERE schedule_enabled;

CREATE INDEX workflows_lower_name_idx ON ork.workflows USING btree (lower(name) text_pattern_ops);

CREATE TRIGGER task_queue_forget_deleted_tasks AFTER DELETE ON ork.tasks REFERENCING OLD TABLE AS deleted_tasks FOR EACH STATEMENT EXECUTE FUNCTION ork.task_queue_forget_deleted_tasks();

CREATE TRIGGER tasks_forget_deleted_runs AFTER DELETE ON ork.runs REFERENCING OLD TABLE AS deleted_runs FOR EACH STATEMENT EXECUTE FUNCTION ork.tasks_forget_deleted_runs();

ALTER TABLE ONLY ork.deferred_jobs
    ADD CONSTRAINT deferred_jobs_task_id_fkey FOREIGN KEY (task_id) REFERENCES ork.tasks(id) ON DELETE CASCADE;

ALTER TABLE ONLY ork.runs
    ADD CONSTRAINT runs_snapshot_id_fkey FOREIGN KEY (snapshot_id) REFERENCES ork.workflow_snapshots(id) ON DELETE SET NULL;

ALTER TABLE ONLY ork.runs
    ADD CONSTRAINT runs_workflow_id_fkey FOREIGN KEY (workflow_id) REFERENCES ork.workflows(id) ON DELETE CASCADE;

ALTER TABLE ONLY ork.slot_pools
    ADD CONSTRAINT slot_pools_workflow_id_fkey FOREIGN KEY (workflow_id) REFERENCES ork.workflows(id) ON DELETE CASCADE;

ALTER TABLE ONLY ork.snapshot_tasks
    ADD CONSTRAINT snapshot_tasks_snapshot_id_fkey FOREIGN KEY (snapshot_id) REFERENCES ork.workflow_snapshots(id) ON DELETE CASCADE;

ALTER TABLE ONLY ork.task_log_sizes
    ADD CONSTRAINT task_log_sizes_task_id_fkey FOREIGN KEY (task_id) REFERENCES ork.tasks(id) ON DELETE CASCADE;

ALTER TABLE ONLY ork.task_logs
    ADD CONSTRAINT task_logs_task_id_fkey FOREIGN KEY (task_id) REFERENCES ork.tasks(id) ON DELETE CASCADE;

ALTER TABLE ONLY ork.workflow_snapshots
    ADD CONSTRAINT workflow_snapshots_workflow_id_fkey FOREIGN KEY (workflow_id) REFERENCES ork.workflows(id) ON DELETE CASCADE;

ALTER TABLE ONLY ork.workflow_tasks
    ADD CONSTRAINT workflow_tasks_workflow_id_fkey FOREIGN KEY (workflow_id) REFERENCES ork.workflows(id) ON DELETE CASCADE;

ALTER TABLE ONLY ork.workflows
    ADD CONSTRAINT workflows_current_snapshot_fk FOREIGN KEY (current_snapshot_id) REFERENCES ork.workflow_snapshots(id) ON DELETE SET NULL;
