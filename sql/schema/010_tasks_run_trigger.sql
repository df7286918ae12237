-- orkstate schema, version 10: tasks.run_id without a foreign key (issue 14).
--
-- The foreign key checked every new task against its run: a key probe of runs_pkey
-- and a share lock on the run's row per task, about a third of a task's start from
-- a compiled snapshot (TestStartPendingRunsCPU: 15.3 against 10.2 µs of server CPU
-- per task for runs of 100). Every path that inserts tasks already holds its run
-- (start_pending_runs and start_run lock it, create_tasks locks it and refuses an
-- unknown run with OK404, an import inserts the run in the same transaction), so the
-- check found nothing that the lock had not. The cascade goes the way task_queue's
-- did: a statement-level trigger removes the tasks of deleted runs (purge_runs,
-- a workflow's cascade), one key probe of tasks_run_id_task_index_key per run.
--
-- A run's deletion and a start or create_tasks of it are ordered by the run's row
-- lock: a deletion waits for the insert to commit and its trigger's delete (a new
-- statement, so a new snapshot under read committed) then sees the inserted tasks;
-- an insert that comes second finds the run gone. A repeatable-read deleter gets a
-- serialization failure instead, as every insert path also updates the run's row.
alter table {{.schema}}.tasks drop constraint tasks_run_id_fkey;

create function {{.schema}}.tasks_forget_deleted_runs()
returns trigger
language plpgsql
set search_path = {{.schema}}, pg_temp
as $$
declare
    v_ids bigint[] := array(select d.id from deleted_runs d);
begin
    delete from tasks t where t.run_id = any(v_ids);
    return null;
end
$$;

create trigger tasks_forget_deleted_runs
    after delete on {{.schema}}.runs
    referencing old table as deleted_runs
    for each statement execute function {{.schema}}.tasks_forget_deleted_runs();

---- create above / drop below ----

drop trigger tasks_forget_deleted_runs on {{.schema}}.runs;
drop function {{.schema}}.tasks_forget_deleted_runs();
-- none should exist; the constraint cannot be added back over an orphan
delete from {{.schema}}.tasks t where not exists (select 1 from {{.schema}}.runs r where r.id = t.run_id);
alter table {{.schema}}.tasks
    add constraint tasks_run_id_fkey foreign key (run_id) references {{.schema}}.runs(id) on delete cascade;
