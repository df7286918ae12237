-- orkstate function package: every function of the install, in the schema {{.schema}}_api.
-- tern installs it whole, in one transaction, so a running scheduler never sees half of it:
--   tern code install -c tern.conf sql/functions
-- Functions are SECURITY INVOKER and pin search_path; a role with USAGE on both schemas and
-- DML on the tables of {{.schema}} can call every one of them.
-- The tables are private; these functions and their documented columns are the API.
--
-- Every function runs with jit = off: their statements touch a few thousand rows at
-- most, yet plan costs over jit_above_cost made Postgres spend ~45 ms compiling a 70 ms
-- claim of 1,000 tasks.
--
-- They also run with plan_cache_mode = force_generic_plan. Their statements join input
-- arrays to tables by key; a generic plan estimates an unnested array at a few rows and
-- probes the key per element, whatever the array's size. A custom plan sees the real
-- size and, for 1,000 ids, hashed them against a sequential scan of all of tasks (55 ms
-- instead of 20 at 50,000 tasks, growing with the table) on each connection's first
-- five calls, before the plan cache settled on the generic plan.
--
-- Row locks are FOR NO KEY UPDATE throughout: the functions never change keys, and a
-- plain FOR UPDATE would conflict with the FOR KEY SHARE that foreign-key checks take on
-- runs and tasks (an update of a row inserted or updated earlier in the same transaction
-- re-checks its foreign key), which deadlocked concurrent reporters of one run.

drop schema if exists {{.schema}}_api cascade;
create schema {{.schema}}_api;
comment on schema {{.schema}}_api is 'orkstate functions of the install {{.schema}} (re-installed whole on each deploy)';

{{ template "checks.sql" . }}
{{ template "notify.sql" . }}
{{ template "task_queue.sql" . }}
{{ template "run_counters.sql" . }}
{{ template "apply_task_changes.sql" . }}
{{ template "set_task_states.sql" . }}
{{ template "create_tasks.sql" . }}
{{ template "start_pending_runs.sql" . }}
{{ template "claim_tasks.sql" . }}
{{ template "leases_and_timeouts.sql" . }}
{{ template "runs.sql" . }}
{{ template "retry_task.sql" . }}
{{ template "schedules.sql" . }}
{{ template "deferred_jobs.sql" . }}
{{ template "purge.sql" . }}
{{ template "stats.sql" . }}
