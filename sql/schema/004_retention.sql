-- orkstate schema, version 4: retention.
--
-- purge_runs (sql/functions/purge.sql) takes the oldest finished runs first, and
-- stats() counts the runs that finished lately; both read this index, which holds only
-- finished runs in the order they finished. A run's status changes at the same time as
-- its finished_at, and runs_status_idx already covers status, so the update that
-- finishes a run was never HOT and this index costs it one more entry, not a heap copy.
--
-- "if not exists": on a large install a DBA can build it first without blocking writes
-- to runs (create index concurrently, same name and definition; docs/operations.md),
-- and the migration then finds it.
create index if not exists runs_finished_idx on {{.schema}}.runs (finished_at, id)
    where status in ('success', 'failed', 'cancelled');

---- create above / drop below ----

drop index {{.schema}}.runs_finished_idx;
