-- claim_tasks moves up to p_limit dispatchable tasks (pending, every dependency
-- succeeded, retry_at due; run state is folded into task status) to dispatched for
-- p_claimer, highest priority first and in id order within a priority, within the
-- concurrency limits (see slots.sql), FOR UPDATE SKIP LOCKED, and returns in one round trip what a
-- dispatch needs: the task, its attempt (the fencing token to report back), the
-- workflow's id, name, job_name, project and region, upstream_outputs, a JSON object
-- of each dependency's output by name, and the task's priority (its effective one),
-- priority_override (null: the workflow's) and concurrency_key ('' for none).
-- p_executor_types, when not null, filters by type.
-- p_now is the time of the claim: retry times are due against it and the lease, the
-- dispatch and the timeout are stamped from it (null or left out: now(), the
-- transaction's start; pgstore passes its Config.Now, tests move it).
--
-- The row leaves out what every claimed task has in common: status 'dispatched',
-- claimed_by p_claimer, unmet_deps 0, and no retry_at, started_at or finished_at.
--
-- The candidate scan reads task_queue — only ready tasks are in it — in id order with a
-- LIMIT: no join to runs and no sort, so its cost does not grow with the number of
-- blocked tasks (a join to runs was planned as a loop over every run: 420 ms per 1,000
-- at 1M tasks against < 40 ms for an index scan). The claimed tasks' queue rows are
-- deleted, one lease row names them all (as id ranges), tasks with a timeout get a
-- deadline row, and tasks in a slot group hold its slots (slot_hold, set by the same
-- update).
create function {{.schema}}_api.claim_tasks(
    p_claimer text,
    p_limit integer,
    p_executor_types text[] default null,
    p_lease interval default '5 minutes',
    p_now timestamptz default now()
)
returns table (
    id bigint, run_id bigint, task_index integer, task_name text, executor_type text, depends_on text[],
    execution_name text, params jsonb, output jsonb, error text, attempt integer,
    max_retries integer, timeout_seconds integer, lease_expires_at timestamptz, created_at timestamptz,
    dispatched_at timestamptz, workflow_id bigint, workflow_name text, job_name text, project text, region text,
    upstream_outputs jsonb, priority integer, priority_override integer, concurrency_key text
)
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
-- Every read here is an index scan with a LIMIT or a key probe. When most ready rows
-- are grouped, the planner chose a sequential scan for the group probe below (13 ms
-- at 20,000 queued rows, TestClaimSkipsTasksAFullPoolHoldsBack).
set enable_seqscan = off
as $$
#variable_conflict use_column
declare
    v_ids bigint[];
    v_groups bigint[];
    v_grouped boolean;
    v_n integer;
    v_now constant timestamptz := coalesce(p_now, now());
begin
    perform _check_claim(p_claimer, p_limit, p_lease);
    -- Is any ready task in a slot group (a pool or a fair run)? One probe of the
    -- group index, chosen once per call; without one the claim is the plain scan of
    -- the ungrouped list and pays nothing for limits.
    v_grouped := exists (select 1 from task_queue q where q.slot_group <> 0);
    if v_grouped then
        -- the rows to take, locked, with their groups (see slots.sql)
        select array_agg(p.task_id), array_agg(p.slot_group) into v_ids, v_groups
        from _pick_grouped(p_limit, p_executor_types, v_now) p;
    else
        -- priority first, then dispatch order: an ordered scan of task_queue_order_idx
        v_ids := array(
            select q.task_id
            from task_queue q
            where q.slot_group = 0
              and (q.ready_at is null or q.ready_at <= v_now)
              and (p_executor_types is null or q.executor_type = any(p_executor_types))
            order by q.priority desc, q.task_id
            limit p_limit
            for no key update skip locked);
    end if;
    return query
    with owned as (
        -- The task rows are locked SKIP LOCKED too: a reporter holding a task (it locks
        -- tasks first, then their queue rows) is skipped, never waited for, so no deadlock.
        -- = any(array) probes the primary key per task; a join was planned as a merge
        -- join walking tasks_pkey from its start (354 ms per claim at 1M blocked tasks).
        -- The status check is read from the row's newest version once it is locked: a
        -- queue row can only name a ready task, and this keeps a finished task from
        -- ever being claimed again should one outlive its task all the same.
        select t.id from tasks t
        where t.id = any(v_ids)
          and t.status = 'pending' and t.unmet_deps = 0
        for no key update skip locked
    ), claimed as (
        -- No indexed column changes here: the update stays on the page (HOT).
        update tasks t
        set status = 'dispatched',
            attempts = t.attempts + 1,
            claimed_by = p_claimer,
            lease_expires_at = v_now + p_lease,
            dispatched_at = v_now,
            started_at = null,
            retry_at = null,
            timeout_at = case when t.timeout_seconds > 0 then v_now + make_interval(secs => t.timeout_seconds) end,
            -- a task in a slot group holds its slots until it leaves flight (slots.sql)
            slot_hold = _slot_hold(t.slot_hold, 'dispatched', t.slot_group)
        where t.id = any(array(select o.id from owned o))
        returning t.id, t.run_id, t.task_index, t.task_name, t.executor_type, t.depends_on,
                  t.execution_name, t.params, t.output, t.error, t.attempts, t.max_retries,
                  t.timeout_seconds, t.lease_expires_at, t.created_at, t.dispatched_at, t.timeout_at,
                  t.priority, t.slot_group, t.priority_override, t.concurrency_key
    ), dequeued as (
        -- A delete writes no new row version and no index entry.
        delete from task_queue q
        where q.task_id = any(array(select c.id from claimed c))
    ), leased as (
        -- Ids less than 8 apart share a range: a claim by priority or across groups
        -- takes every few ids (every third with three priorities), and 1,000 one-id
        -- ranges went to TOAST, compressed (pglz: 6% of such a claim's time). The ids
        -- in the gaps are harmless: the sweep decides from each task's own row.
        insert into task_leases (expires_at, task_ids)
        select v_now + p_lease,
               range_agg(int8range(c.id, c.id + 8)) * int8multirange(int8range(min(c.id), max(c.id), '[]'))
        from claimed c
        having count(*) > 0
    ), timed as (
        insert into task_deadlines as d (task_id, timeout_at)
        select c.id, c.timeout_at from claimed c where c.timeout_at is not null
        on conflict (task_id) do update set timeout_at = excluded.timeout_at
    )
    select c.id, c.run_id, c.task_index, c.task_name, c.executor_type, c.depends_on,
           c.execution_name, c.params, c.output, c.error, c.attempts,
           c.max_retries, c.timeout_seconds, c.lease_expires_at, c.created_at, c.dispatched_at,
           w.id, w.name, w.job_name, w.project, w.region,
           -- a key probe per dependency: "task_name = any(depends_on)" was planned as a
           -- bitmap scan per claimed task, 4 ms per 1,000
           case when cardinality(c.depends_on) = 0 then '{}'::jsonb
                else (select coalesce(jsonb_object_agg(u.task_name, u.output), '{}'::jsonb)
                      from unnest(c.depends_on) as dep(name)
                      join tasks u on u.run_id = c.run_id and u.task_name = dep.name) end,
           c.priority::integer, c.priority_override::integer, c.concurrency_key
    from claimed c
    join runs r on r.id = c.run_id
    join workflows w on w.id = r.workflow_id
    order by c.priority desc, c.id;
    get diagnostics v_n = row_count;
    if v_grouped then
        -- The slots taken: _pick_grouped holds the pools and chose no more than each
        -- has room for. Normally every picked task was taken and the pick's groups are
        -- the claimed tasks' groups; else (a task another transaction moved meanwhile)
        -- they are read back from the tasks this claim dispatched.
        if v_n < coalesce(cardinality(v_ids), 0) then
            v_groups := array(select t.slot_group from tasks t
                              where t.id = any(v_ids) and t.status = 'dispatched'
                                and t.claimed_by = p_claimer and t.dispatched_at = v_now);
        end if;
        perform _adjust_pools(v_groups, null);
    end if;
end
$$;
