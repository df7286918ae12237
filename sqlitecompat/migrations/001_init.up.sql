-- orkstate on SQLite, version 1: the tables of sql/schema/001_init.sql in SQLite form.
-- Timestamps are INTEGER unix microseconds (UTC), one format everywhere.
-- JSON values (params, output, task_params, depends_on, tasks_json) are TEXT holding JSON.

CREATE TABLE workflows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE CHECK (name <> ''),
    description TEXT NOT NULL DEFAULT '',
    job_name TEXT NOT NULL DEFAULT '',
    region TEXT NOT NULL DEFAULT '',
    project TEXT NOT NULL DEFAULT '',
    executor_type TEXT NOT NULL DEFAULT '',
    task_params TEXT,
    schedule TEXT NOT NULL DEFAULT '',
    schedule_enabled INTEGER NOT NULL DEFAULT 0,
    last_scheduled_at INTEGER,
    next_scheduled_at INTEGER,
    current_snapshot_id INTEGER REFERENCES workflow_snapshots (id) ON DELETE SET NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX workflows_due_idx ON workflows (next_scheduled_at) WHERE schedule_enabled;

CREATE TABLE workflow_tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id INTEGER NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    task_index INTEGER NOT NULL CHECK (task_index >= 0),
    task_name TEXT NOT NULL CHECK (task_name <> ''),
    executor_type TEXT NOT NULL DEFAULT '',
    depends_on TEXT NOT NULL DEFAULT '[]',
    params TEXT,
    signature TEXT,
    max_retries INTEGER NOT NULL DEFAULT 0 CHECK (max_retries >= 0),
    timeout_seconds INTEGER NOT NULL DEFAULT 0 CHECK (timeout_seconds >= 0),
    created_at INTEGER NOT NULL,
    UNIQUE (workflow_id, task_index),
    UNIQUE (workflow_id, task_name)
);

CREATE TABLE workflow_snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id INTEGER NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    content_hash TEXT NOT NULL,
    tasks_json TEXT NOT NULL CHECK (json_type(tasks_json) = 'array'),
    created_at INTEGER NOT NULL,
    UNIQUE (workflow_id, content_hash)
);

CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id INTEGER NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    snapshot_id INTEGER REFERENCES workflow_snapshots (id) ON DELETE SET NULL,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'paused', 'success', 'failed', 'cancelled')),
    triggered_by TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER
);
CREATE INDEX runs_workflow_idx ON runs (workflow_id, id DESC);
CREATE INDEX runs_status_idx ON runs (status, id);

CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task_index INTEGER NOT NULL CHECK (task_index >= 0),
    task_name TEXT NOT NULL CHECK (task_name <> ''),
    executor_type TEXT NOT NULL DEFAULT '',
    depends_on TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'paused', 'dispatched', 'running', 'success', 'failed', 'cancelled')),
    execution_name TEXT NOT NULL DEFAULT '',
    params TEXT,
    output TEXT,
    error TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_retries INTEGER NOT NULL DEFAULT 0 CHECK (max_retries >= 0),
    timeout_seconds INTEGER NOT NULL DEFAULT 0 CHECK (timeout_seconds >= 0),
    retry_at INTEGER,
    unmet_deps INTEGER NOT NULL DEFAULT 0 CHECK (unmet_deps >= 0),
    claimed_by TEXT NOT NULL DEFAULT '',
    lease_expires_at INTEGER,
    timeout_at INTEGER,
    created_at INTEGER NOT NULL,
    dispatched_at INTEGER,
    started_at INTEGER,
    finished_at INTEGER,
    UNIQUE (run_id, task_index),
    UNIQUE (run_id, task_name)
);
-- The claim index: the dispatchable predicate minus retry_at, in dispatch order.
CREATE INDEX tasks_ready_idx ON tasks (id) WHERE status = 'pending' AND unmet_deps = 0;
CREATE INDEX tasks_lease_idx ON tasks (lease_expires_at) WHERE status = 'dispatched';
CREATE INDEX tasks_active_idx ON tasks (timeout_at) WHERE status IN ('dispatched', 'running');
CREATE INDEX tasks_run_status_idx ON tasks (run_id, status);

-- The dependency edges of tasks, resolved to ids when the tasks are created, so
-- finding a task's dependents is an index lookup (O(fan-out)), not a scan of the run.
CREATE TABLE task_deps (
    upstream_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    downstream_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    PRIMARY KEY (upstream_id, downstream_id)
) WITHOUT ROWID;
CREATE INDEX task_deps_downstream_idx ON task_deps (downstream_id, upstream_id);

-- Logs are chunks appended as rows: an append costs O(chunk).
CREATE TABLE task_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    chunk TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX task_logs_task_idx ON task_logs (task_id, id);
-- Running total per task, so the cap is checked without summing the log.
CREATE TABLE task_log_sizes (
    task_id INTEGER PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    bytes INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE deferred_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    service_type TEXT NOT NULL CHECK (service_type <> ''),
    job_id TEXT NOT NULL CHECK (job_id <> ''),
    job_data TEXT,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'polling', 'completed', 'failed', 'cancelled')),
    error TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_by TEXT NOT NULL DEFAULT '',
    lease_expires_at INTEGER,
    next_poll_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    last_polled_at INTEGER,
    finished_at INTEGER
);
CREATE INDEX deferred_jobs_task_idx ON deferred_jobs (task_id);
CREATE INDEX deferred_jobs_due_idx ON deferred_jobs (next_poll_at, id) WHERE status IN ('pending', 'polling');
