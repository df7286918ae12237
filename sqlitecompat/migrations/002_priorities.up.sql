-- Priorities, concurrency limits and fairness (pgstore's migration 005). SQLite has one
-- writer, so nothing is counted ahead: the claim counts the tasks in flight per key and
-- per workflow when it runs.
ALTER TABLE workflows ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workflows ADD COLUMN max_active_runs INTEGER;
ALTER TABLE workflows ADD COLUMN max_tasks_in_flight INTEGER;
-- 1 once the workflow had a max tasks in flight: its runs started since count against it
ALTER TABLE workflows ADD COLUMN task_pool INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workflows ADD COLUMN fair INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workflow_tasks ADD COLUMN priority INTEGER;
ALTER TABLE workflow_tasks ADD COLUMN concurrency_key TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN priority_override INTEGER;
ALTER TABLE tasks ADD COLUMN concurrency_key TEXT NOT NULL DEFAULT '';
-- 1: the task counts against its workflow's max tasks in flight
ALTER TABLE tasks ADD COLUMN workflow_pool INTEGER NOT NULL DEFAULT 0;
-- the run, for a task of a fair workflow; else 0
ALTER TABLE tasks ADD COLUMN fair_run INTEGER NOT NULL DEFAULT 0;
CREATE TABLE concurrency_keys (
    key TEXT PRIMARY KEY CHECK (key <> ''),
    slots INTEGER NOT NULL CHECK (slots > 0)
);
CREATE INDEX tasks_key_status_idx ON tasks (concurrency_key, status) WHERE concurrency_key <> '';
CREATE INDEX runs_active_idx ON runs (workflow_id) WHERE status IN ('running', 'paused');
