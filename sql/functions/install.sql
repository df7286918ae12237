-- orkstate function package: every function of the install, in the schema {{.schema}}_api.
-- pgstore.Migrate and `tern code install -c tern.conf sql/functions` both render this
-- file and run it in one transaction, so they behave the same and a running scheduler
-- never sees half of the package. What the install does (install_package.sql):
--
--   - refuses an install schema name that pgstore.ValidateSchemaName refuses (tern
--     configs other than ours do not check ORK_SCHEMA);
--   - creates {{.schema}}_api, or reuses it only when its comment marks it as this
--     install's package: a schema of that name that orkstate did not create is refused;
--   - does nothing when the package text is the one installed last and the functions
--     are still the ones it created (a hash of each, kept in the schema's comment; such
--     a call takes ~40 ms, TestReinstallOnlyWhenPackageChanges);
--   - otherwise drops the package's own routines in one DROP ... RESTRICT (a view or
--     anything else outside the package that uses one stops the install with the
--     objects named; nothing is dropped with CASCADE), creates the new ones, and gives
--     every routine whose signature (or, when it changed, whose unique name) existed
--     before exactly its old privileges; a routine new in this release gets those all
--     the old ones had in common, plus the owner's default privileges. The schema is
--     never dropped, so grants on it and default privileges in it survive
--     (TestGrantsSurviveReinstallAndUpgrade).
--
-- So the package may hold only routines, and its files must not use the dollar quotes
-- $install$, $package$ or $schema$ (the package is one literal inside a DO block).
--
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

-- Nothing planted in public (an unnest(bigint[]), an = on bigint[]) may resolve while
-- the package is installed: its functions pin their own path, the install pins this one.
set local search_path = pg_catalog, pg_temp;

do $install$
declare
    v_package constant text := $package$
{{ template "checks.sql" . }}
{{ template "slots.sql" . }}
{{ template "notify.sql" . }}
{{ template "readiness.sql" . }}
{{ template "run_counters.sql" . }}
{{ template "apply_task_changes.sql" . }}
{{ template "set_task_states.sql" . }}
{{ template "create_tasks.sql" . }}
{{ template "start_pending_runs.sql" . }}
{{ template "claim_tasks.sql" . }}
{{ template "report_and_claim.sql" . }}
{{ template "leases_and_timeouts.sql" . }}
{{ template "queue_rotation.sql" . }}
{{ template "runs.sql" . }}
{{ template "retry_task.sql" . }}
{{ template "schedules.sql" . }}
{{ template "deferred_jobs.sql" . }}
{{ template "purge.sql" . }}
{{ template "stats.sql" . }}
$package$;
{{ template "install_package.sql" . }}
$install$;
