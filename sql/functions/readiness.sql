-- Readiness (docs/architecture.md, "Readiness is pushed"; issue 14): a success makes
-- its dependents ready without writing their rows.
--   no dependency        ready from the start;
--   one dependency       unmet_deps 0 on the row, ready when that dependency has
--                        succeeded (derived);
--   two or more          unmet_deps 0 on the row, the count of unmet dependencies in
--                        task_deps_unmet (a missing row counts 0), decremented by each
--                        dependency's success: a HOT update of a narrow row instead of
--                        a new version of the wide task row (apart).
-- A row written by an older package with a count on the task row (unmet_deps > 0) is
-- counted there until that count is 0 (no migration rewrites rows). task_deps_unmet
-- rows are written only by a transaction holding the task's row lock, so the task
-- lock order (id order) is theirs too.

-- _deps_derived says whether a task's readiness is derived from its one dependency's
-- status rather than counted. Plain SQL: the planner inlines it.
create function {{.schema}}_api._deps_derived(p_depends_on text[], p_unmet_deps integer)
returns boolean
language sql
immutable
as $$
    select p_unmet_deps = 0 and cardinality(p_depends_on) = 1
$$;

-- _deps_apart says whether a task's unmet dependencies are counted in task_deps_unmet
-- rather than on its row. Plain SQL: the planner inlines it.
create function {{.schema}}_api._deps_apart(p_depends_on text[], p_unmet_deps integer)
returns boolean
language sql
immutable
as $$
    select p_unmet_deps = 0 and cardinality(p_depends_on) >= 2
$$;

-- _deps_met says whether every dependency of the task with these columns has succeeded.
create function {{.schema}}_api._deps_met(p_id bigint, p_run_id bigint, p_depends_on text[], p_unmet_deps integer)
returns boolean
language sql
stable
as $$
    select p_unmet_deps = 0
       and case when cardinality(p_depends_on) = 1
                then exists (select 1 from {{.schema}}.tasks u
                             where u.run_id = p_run_id and u.task_name = p_depends_on[1] and u.status = 'success')
                when cardinality(p_depends_on) >= 2
                then not exists (select 1 from {{.schema}}.task_deps_unmet n where n.task_id = p_id and n.unmet > 0)
                else true end
$$;

-- task_unmet_deps is Task.UnmetDeps, computed on read: for a task with one dependency,
-- 1 until that dependency has succeeded and 0 from then on, whatever the task's own
-- status; for any other task, its count (maintained while it is pending or paused),
-- from task_deps_unmet or, for a row an older package counted, from its row.
-- sqlitecompat reads the same rule.
create function {{.schema}}_api.task_unmet_deps(p_id bigint, p_run_id bigint, p_depends_on text[], p_unmet_deps integer)
returns integer
language sql
stable
as $$
    select case when cardinality(p_depends_on) = 1
                then (not exists (select 1 from {{.schema}}.tasks u
                                  where u.run_id = p_run_id and u.task_name = p_depends_on[1]
                                    and u.status = 'success'))::integer
                when cardinality(p_depends_on) >= 2 and p_unmet_deps = 0
                then coalesce((select n.unmet from {{.schema}}.task_deps_unmet n where n.task_id = p_id), 0)
                else p_unmet_deps end
$$;

-- _set_deps_unmet sets the counts of tasks whose readiness is counted apart (an
-- operator's retry, an import); the caller holds their row locks or created them.
create function {{.schema}}_api._set_deps_unmet(p_task_ids bigint[], p_unmet integer[])
returns void
language sql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
as $$
    insert into task_deps_unmet as n (task_id, unmet)
    select * from unnest(p_task_ids, p_unmet) as x(task_id, unmet) order by 1
    on conflict (task_id) do update set unmet = excluded.unmet where n.unmet <> excluded.unmet
$$;

-- _queue_sync makes the sweep tables agree with the given tasks' rows (callers hold
-- their row locks):
--   task_queue      a row exactly while the task is pending with every dependency met
--                   (_deps_met; ready_at = retry_at);
--   task_deadlines  a row exactly while the task is dispatched or running with a
--                   timeout_at;
--   task_leases     a dispatched task is named by a row due no later than its lease;
--   slots           a task that is not dispatched or running holds no slot (its
--                   slot_hold's bit 1 is clear, its pools count it no more).
-- Every function that changes a task's status or unmet_deps outside the hot paths
-- calls it for the tasks it changed; claim_tasks and _apply_task_changes keep the
-- tables themselves, by the same rule. A lease row is written for each dispatched task
-- given, so pass only tasks that just became dispatched (an import): a spare row is
-- harmless (the sweep checks the task) but costs a little.
create function {{.schema}}_api._queue_sync(p_task_ids bigint[])
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
    v_ready bigint[];
    v_not_ready bigint[];
    v_timed bigint[];
    v_dispatched boolean;
    v_left bigint[];
begin
    if coalesce(cardinality(p_task_ids), 0) = 0 then
        return;
    end if;
    -- Array-driven statements: each is an index probe per task whatever the planner
    -- believes about a young table's size.
    select array_agg(t.id) filter (where t.status = 'pending' and _deps_met(t.id, t.run_id, t.depends_on, t.unmet_deps)),
           array_agg(t.id) filter (where not (t.status = 'pending' and _deps_met(t.id, t.run_id, t.depends_on, t.unmet_deps))),
           array_agg(t.id) filter (where t.timeout_seconds > 0 or t.timeout_at is not null),
           coalesce(bool_or(t.status = 'dispatched'), false),
           array_agg(t.id) filter (where t.status not in ('dispatched', 'running') and t.slot_hold & 1 = 1)
    into v_ready, v_not_ready, v_timed, v_dispatched, v_left
    from tasks t
    where t.id = any(p_task_ids);

    if v_not_ready is not null then
        delete from task_queue q where q.task_id = any(v_not_ready);
    end if;
    -- a task that left flight gives its slots back (_release_slots decides under the
    -- row's lock; the filter above only spares the call)
    if v_left is not null then
        perform _release_slots(v_left);
    end if;
    if v_ready is not null then
        insert into task_queue as q (task_id, executor_type, ready_at, priority, slot_group)
        select t.id, t.executor_type, t.retry_at, t.priority, t.slot_group
        from tasks t
        where t.id = any(v_ready)
        on conflict (task_id) do update
        set executor_type = excluded.executor_type, ready_at = excluded.ready_at,
            priority = excluded.priority, slot_group = excluded.slot_group
        where (q.executor_type, q.ready_at, q.priority, q.slot_group)
              is distinct from (excluded.executor_type, excluded.ready_at, excluded.priority, excluded.slot_group);
    end if;
    if v_timed is not null then
        delete from task_deadlines d
        using tasks t
        where d.task_id = any(v_timed) and t.id = d.task_id
          and not (t.status in ('dispatched', 'running') and t.timeout_at is not null);
        insert into task_deadlines as d (task_id, timeout_at)
        select t.id, t.timeout_at
        from tasks t
        where t.id = any(v_timed) and t.status in ('dispatched', 'running') and t.timeout_at is not null
        on conflict (task_id) do update
        set timeout_at = excluded.timeout_at
        where d.timeout_at is distinct from excluded.timeout_at;
    end if;
    if v_dispatched then
        insert into task_leases (expires_at, task_ids)
        select t.lease_expires_at, range_agg(int8range(t.id, t.id, '[]'))
        from tasks t
        where t.id = any(p_task_ids) and t.status = 'dispatched' and t.lease_expires_at is not null
        group by t.lease_expires_at;
    end if;
end
$$;
