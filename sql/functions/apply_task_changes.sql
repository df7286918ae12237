-- _task_transition_allowed is the transition table of docs/semantics.md ("Statuses and the transition table") for status reports.
-- pending→dispatched belongs to claim_tasks and terminal→pending to retry_task.
-- Plain SQL with no SET clause, so the planner inlines it.
create function {{.schema}}_api._task_transition_allowed(p_from text, p_to text)
returns boolean
language sql
immutable
as $$
    select case p_from
        when 'pending' then p_to in ('running', 'success', 'failed', 'cancelled', 'paused')
        when 'paused' then p_to in ('pending', 'cancelled')
        when 'dispatched' then p_to in ('running', 'success', 'failed', 'cancelled', 'pending')
        when 'running' then p_to in ('success', 'failed', 'cancelled', 'pending')
        else false
    end
$$;

-- _retry_backoff is Ork's delay after failed attempt n: 1 s, then 2^(n-1) s, capped at 60 s.
create function {{.schema}}_api._retry_backoff(p_attempt integer)
returns interval
language sql
immutable
as $$
    select make_interval(secs => case when p_attempt <= 1 then 1
                                      when p_attempt > 7 then 60
                                      else least(60, power(2, p_attempt - 1)) end)
$$;

-- _retried says whether a report of p_reported is a failure that the task retries: it
-- has a retry left. attempts counts claims (0 for a task failed before any claim, which
-- counts as one attempt). The state machine's one retry rule (issue 17: it was written
-- out six times); plain SQL, so the planner inlines it.
create function {{.schema}}_api._retried(p_reported text, p_attempts integer, p_max_retries integer)
returns boolean
language sql
immutable
as $$
    select p_reported = 'failed' and greatest(p_attempts, 1) <= p_max_retries
$$;

-- _new_attempt says whether a report of p_reported sends the task back to pending for a
-- new attempt: a requeue or resume (pending), or a retried failure.
create function {{.schema}}_api._new_attempt(p_reported text, p_attempts integer, p_max_retries integer)
returns boolean
language sql
immutable
as $$
    select p_reported = 'pending' or {{.schema}}_api._retried(p_reported, p_attempts, p_max_retries)
$$;

-- _finish_dependents gives every unfinished transitive dependent of p_task_ids the
-- terminal status p_status with error p_error, finished at p_now, and returns what it finished.
-- Dependents are found through the downstream arrays: O(affected tasks), not O(run).
create function {{.schema}}_api._finish_dependents(p_task_ids bigint[], p_status text, p_error text,
                                                    p_now timestamptz default now())
returns table (task_id bigint, run_id bigint)
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
    v_ids bigint[];
    v_runs bigint[];
begin
    if coalesce(cardinality(p_task_ids), 0) = 0 then
        return;
    end if;
    with recursive down(id) as (
        select dn.id from tasks s cross join unnest(s.downstream) as dn(id) where s.id = any(p_task_ids)
        union
        select dn.id from down join tasks s on s.id = down.id cross join unnest(s.downstream) as dn(id)
    ), locked as (
        select t.id from tasks t
        where t.id = any(array(select down.id from down)) and t.status not in ('success', 'failed', 'cancelled')
        order by t.id
        for no key update
    ), hit as (
        update tasks t
        set status = p_status, error = p_error, finished_at = p_now, claimed_by = '',
            lease_expires_at = null, timeout_at = null, retry_at = null
        from locked
        where t.id = locked.id
        returning t.id, t.run_id
    )
    select array_agg(hit.id), array_agg(hit.run_id) into v_ids, v_runs from hit;
    perform _queue_sync(v_ids);
    return query select * from unnest(v_ids, v_runs);
end
$$;

-- _end_deferred_jobs cancels the unfinished deferred jobs of tasks whose attempt ended
-- (finished, or back to pending), so a retry never inherits the previous attempt's polling.
create function {{.schema}}_api._end_deferred_jobs(p_task_ids bigint[])
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
begin
    -- The partial due index makes "is anything polling at all" a near-free check,
    -- which spares the per-task probe on installs without deferred work.
    if coalesce(cardinality(p_task_ids), 0) = 0
       or not exists (select 1 from deferred_jobs j where j.status in ('pending', 'polling')) then
        return;
    end if;
    update deferred_jobs j
    set status = 'cancelled', finished_at = now(), claimed_by = '', lease_expires_at = null
    where j.task_id = any(p_task_ids) and j.status in ('pending', 'polling');
end
$$;

-- _apply_task_changes applies status reports to distinct tasks (set_task_states splits
-- repeated ids into rounds) and returns one outcome per input ordinal, in ordinal
-- order. It is the single implementation of the task state machine: reports, lease
-- expiry, timeouts and deferred-job outcomes all come through here.
--
-- Its statements join sorted id lists to tables by key, and its SET clauses leave the
-- planner nothing but nested loops over index scans (for it and the functions it
-- calls): the row locks are then taken in the order of the sorted input, which is what
-- keeps concurrent reporters from deadlocking.
--
-- p_now is the time of the changes: retry times, start and finish times and timeouts
-- are stamped from it (the callers pass their p_now, else now()). p_execution_names,
-- p_errors, p_outputs and p_attempts may be null: a null for every row.
create function {{.schema}}_api._apply_task_changes(
    p_ords integer[],
    p_task_ids bigint[],
    p_statuses text[],
    p_execution_names text[],
    p_errors text[],
    p_outputs jsonb[],
    p_attempts integer[],
    p_now timestamptz
)
returns table (ord integer, task_id bigint, outcome text, status text)
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
set enable_hashjoin = off
set enable_mergejoin = off
set enable_seqscan = off
set enable_bitmapscan = off
as $$
#variable_conflict use_column
declare
    v_ords integer[];
    v_pos integer[];
    v_ids bigint[];
    v_out text[];
    v_out_status text[];
    v_outcomes text[];
    v_statuses text[];
    v_down bigint[];
    v_failed bigint[];
    v_cancelled bigint[];
    v_ended bigint[];
    v_fin_runs bigint[];
    v_fin_statuses text[];
    v_requeued boolean;
    v_became_ready boolean := false;
    v_dep_runs bigint[];
    v_ready bigint[];
    v_ready_types text[];
    v_ready_at timestamptz[];
    v_ready_prio smallint[];
    v_ready_group bigint[];
    v_unready bigint[];
    v_pending_derived bigint[];
    v_counted bigint[];
    v_apart bigint[];
    v_timed bigint[];
    v_timed_at timestamptz[];
    v_untimed bigint[];
    v_taken bigint[];
    v_given bigint[];
begin
    -- One statement decides and applies: the guard in the WHERE clause is the §3
    -- transition table plus attempt fencing, evaluated on the current row once the
    -- update holds it (READ COMMITTED re-checks a row a concurrent change waited for);
    -- a row it refuses is left alone and classified afterwards. It hands back what the
    -- queue (only ready tasks have a row), the deadlines (only tasks with a timeout) and
    -- the successes' dependents need.
    --
    -- Lock order without a separate locking pass (which cost 1 ms and 60 kB of WAL per
    -- 1,000 tasks): the input is sorted by id and this function allows only nested loops
    -- over index scans (see its SET clauses), so the update visits, and locks, the tasks
    -- in id order. Concurrent batches therefore cannot deadlock on tasks
    -- (ConcurrentOverlappingReports in storetest).
    --
    -- A batch of successes only (a scheduler's usual report) takes the same statement
    -- cut down to what a success does: no retry or new attempt to decide, nothing
    -- joins the queue or takes a slot or a deadline, and the outcome of every applied
    -- row is 'applied'. It writes the same columns with the same values, locks in the
    -- same order (the same input, join and settings), and hands back only the arrays a
    -- success fills: the general statement's two dozen filtered aggregates and its
    -- per-row decisions took 8.3 ms per 1,000 successes, this one 5.9 (issue 14;
    -- docs/architecture.md, "Where to look next").
    if p_statuses <@ array['success'] then
        with success_input as (
            select i.k, i.ord, i.task_id, i.execution_name, i.error, i.output, i.attempt
            from unnest(p_ords, p_task_ids, p_execution_names, p_errors, p_outputs, p_attempts)
                with ordinality as i(ord, task_id, execution_name, error, output, attempt, k)
            order by i.task_id
        ), updated as (
            update tasks t
            set status = 'success',
                execution_name = coalesce(nullif(i.execution_name, ''), t.execution_name),
                error = coalesce(nullif(i.error, ''), t.error),
                output = coalesce(i.output, t.output),
                retry_at = null,
                finished_at = p_now,
                claimed_by = '',
                lease_expires_at = null,
                timeout_at = null,
                slot_hold = _slot_hold(t.slot_hold, 'success', t.slot_group)
            from success_input i
            where t.id = i.task_id
              and (coalesce(i.attempt, 0) = 0 or i.attempt = t.attempts)
              and t.status <> 'success'
              and _task_transition_allowed(t.status, 'success')
            returning i.k, i.ord, t.id, t.run_id, t.timeout_seconds, t.downstream, t.slot_group, t.slot_hold
        )
        select array_agg(u.ord),
               array_agg(u.k),
               array_agg(u.id),
               array_agg(u.run_id),
               (select array_agg(dn.id) from updated s cross join unnest(s.downstream) as dn(id)),
               array_agg(u.id) filter (where u.timeout_seconds > 0),
               array_agg(u.slot_group) filter (where u.slot_hold = 2)
        into v_ords, v_pos, v_ids, v_fin_runs, v_down, v_untimed, v_given
        from updated u;
        -- every applied row: finished, so out of the queue, ended and counted
        v_requeued := false;
        if v_ids is not null then
            v_unready := v_ids;
            v_ended := v_ids;
            v_statuses := array_fill('success'::text, array[cardinality(v_ids)]);
            v_fin_statuses := v_statuses;
            v_outcomes := array_fill('applied'::text, array[cardinality(v_ids)]);
        end if;
    else
    with input as (
        select i.k, i.ord, i.task_id, i.status, i.execution_name, i.error, i.output, i.attempt
        from unnest(p_ords, p_task_ids, p_statuses, p_execution_names, p_errors, p_outputs, p_attempts)
            with ordinality as i(ord, task_id, status, execution_name, error, output, attempt, k)
        order by i.task_id
    ), updated as (
        update tasks t
        set status = case when _retried(i.status, t.attempts, t.max_retries) then 'pending'
                          else i.status end,
            -- A task going back to pending (a retry, a requeue, a resume) starts a new
            -- attempt: the ended attempt's execution and output are dropped, so a
            -- dependent never receives a failed attempt's output (Ork's
            -- reset_task_for_retry does the same). The error is kept as the reason.
            execution_name = case
                when _new_attempt(i.status, t.attempts, t.max_retries) then ''
                else coalesce(nullif(i.execution_name, ''), t.execution_name) end,
            error = coalesce(nullif(i.error, ''), t.error),
            output = case
                when _new_attempt(i.status, t.attempts, t.max_retries) then null
                else coalesce(i.output, t.output) end,
            retry_at = case when _retried(i.status, t.attempts, t.max_retries)
                            then p_now + _retry_backoff(greatest(t.attempts, 1)) end,
            dispatched_at = case
                when _new_attempt(i.status, t.attempts, t.max_retries) then null
                else t.dispatched_at end,
            started_at = case
                when _new_attempt(i.status, t.attempts, t.max_retries) then null
                when i.status = 'running' then coalesce(t.started_at, p_now)
                else t.started_at end,
            finished_at = case
                when i.status in ('success', 'cancelled')
                     or (i.status = 'failed' and not _retried(i.status, t.attempts, t.max_retries)) then p_now end,
            claimed_by = case when i.status = 'running' then t.claimed_by else '' end,
            lease_expires_at = null,
            timeout_at = case
                when i.status = 'running' and t.timeout_seconds > 0
                then coalesce(t.started_at, p_now) + make_interval(secs => t.timeout_seconds) end,
            -- The slots: a task in a slot group holds them while in flight. The row is
            -- held by this update, so the old bit read here is the truth, and what the
            -- update changed comes back in RETURNING (1: took them, 2: gave them back).
            slot_hold = _slot_hold(t.slot_hold,
                                   case when _retried(i.status, t.attempts, t.max_retries) then 'pending'
                                        else i.status end,
                                   t.slot_group)
        from input i
        where t.id = i.task_id
          and (coalesce(i.attempt, 0) = 0 or i.attempt = t.attempts)
          and i.status <> t.status
          and _task_transition_allowed(t.status, i.status)
        returning i.k, i.ord, t.id, t.run_id, t.status, t.unmet_deps, t.executor_type, t.retry_at,
                  t.timeout_seconds, t.timeout_at, t.downstream, t.priority, t.slot_group, t.slot_hold,
                  -- readiness not counted on the row (one dependency, or counted apart)
                  _deps_derived(t.depends_on, t.unmet_deps) or _deps_apart(t.depends_on, t.unmet_deps) as derived,
                  case when i.status = 'failed' and t.status = 'pending' then 'retrying' else 'applied' end as outcome
    )
    -- The arrays are in update order, all alike; only the result is sorted (by ord),
    -- once, at the end: an ORDER BY in each array_agg cost 1 ms per 1,000.
    select array_agg(u.ord),
           array_agg(u.k),
           array_agg(u.id),
           array_agg(u.outcome),
           array_agg(u.status),
           array_agg(u.id) filter (where u.status = 'failed'),
           array_agg(u.id) filter (where u.status = 'cancelled'),
           array_agg(u.id) filter (where u.status in ('success', 'failed', 'cancelled', 'pending')),
           array_agg(u.run_id) filter (where u.status in ('success', 'failed', 'cancelled')),
           array_agg(u.status) filter (where u.status in ('success', 'failed', 'cancelled')),
           coalesce(bool_or(u.status = 'pending'), false),
           (select array_agg(dn.id) from updated s cross join unnest(s.downstream) as dn(id) where s.status = 'success'),
           array_agg(u.id) filter (where u.status = 'pending' and u.unmet_deps = 0 and not u.derived),
           array_agg(u.executor_type) filter (where u.status = 'pending' and u.unmet_deps = 0 and not u.derived),
           array_agg(u.retry_at) filter (where u.status = 'pending' and u.unmet_deps = 0 and not u.derived),
           array_agg(u.priority) filter (where u.status = 'pending' and u.unmet_deps = 0 and not u.derived),
           array_agg(u.slot_group) filter (where u.status = 'pending' and u.unmet_deps = 0 and not u.derived),
           array_agg(u.id) filter (where u.status <> 'pending' or u.unmet_deps <> 0),
           array_agg(u.id) filter (where u.status = 'pending' and u.derived),
           array_agg(u.id) filter (where u.timeout_seconds > 0 and u.timeout_at is not null),
           array_agg(u.timeout_at) filter (where u.timeout_seconds > 0 and u.timeout_at is not null),
           array_agg(u.id) filter (where u.timeout_seconds > 0 and u.timeout_at is null),
           array_agg(u.slot_group) filter (where u.slot_hold = 1),
           array_agg(u.slot_group) filter (where u.slot_hold = 2)
    into v_ords, v_pos, v_ids, v_outcomes, v_statuses, v_failed, v_cancelled, v_ended,
         v_fin_runs, v_fin_statuses, v_requeued, v_down,
         v_ready, v_ready_types, v_ready_at, v_ready_prio, v_ready_group, v_unready, v_pending_derived,
         v_timed, v_timed_at, v_untimed, v_taken, v_given
    from updated u;
    end if;

    -- The queue and the deadlines follow in statements of their own. Each takes its
    -- snapshot after the update above has waited for every transaction that held one
    -- of these tasks, so it sees the rows those wrote. (Inside the update's statement,
    -- a lease sweep's queue row for a task the update then finished was invisible to
    -- the delete: the row outlived the task's success and the task was claimed again.
    -- TestLeaseChurn found it.)
    if v_unready is not null then
        -- a probe per task: only a task reported straight from pending has a row
        delete from task_queue q where q.task_id = any(v_unready);
    end if;
    if v_ready is not null then
        insert into task_queue as q (task_id, executor_type, ready_at, priority, slot_group)
        select * from unnest(v_ready, v_ready_types, v_ready_at, v_ready_prio, v_ready_group)
        on conflict (task_id) do update
        set executor_type = excluded.executor_type, ready_at = excluded.ready_at,
            priority = excluded.priority, slot_group = excluded.slot_group;
    end if;
    -- A task with dependencies and no count on its row that went back to pending is
    -- ready when they have succeeded (one dependency) or its count apart is 0:
    -- _queue_sync reads it, in a statement after the update (so after any wait for the
    -- reporter of a dependency).
    if v_pending_derived is not null then
        perform _queue_sync(v_pending_derived);
    end if;
    -- The pools follow what the update did to the tasks' slots: every task that left
    -- flight gave its slots back, and a task can enter flight without a claim: pending →
    -- running (a report after its lease ran out and before another claim). That one
    -- counts against its pools too, even past their slots (it runs whatever the
    -- database says); claims then wait. Without a slot group in the batch, nothing to
    -- do (the call returns at once).
    perform _adjust_pools(v_taken, v_given);
    if v_timed is not null then
        insert into task_deadlines as d (task_id, timeout_at)
        select * from unnest(v_timed, v_timed_at)
        on conflict (task_id) do update set timeout_at = excluded.timeout_at;
    end if;
    if v_untimed is not null then
        delete from task_deadlines d where d.task_id = any(v_untimed);
    end if;

    -- Push readiness to the successes' dependents, locked in id order in one pass (the
    -- same rows, order and lock mode as the decrement that used to do it). A dependent
    -- with one dependency (chains, fan-out) keeps unmet_deps 0 on its row: that
    -- dependency has just succeeded, so it joins the queue with no write to its own row
    -- (the lock is a tuple lock, not a new row version: 54 bytes of WAL instead of a
    -- row version that, on a page the task's own reports also rewrite, often left the
    -- page and wrote three index entries). The others count down below. They had an
    -- unmet dependency, so they had no queue row: a plain insert.
    --
    -- The lock is taken for the other dependents too: it orders the reporters of one
    -- dependent's dependencies (and its own status changes, a pause or a cancel) in id
    -- order, and the count apart below is written under it.
    if v_down is not null then
        with dec as (
            -- sorted: the lock below visits the dependents, and locks them, in id order
            select dn.id from unnest(v_down) as dn(id) group by dn.id order by dn.id
        ), locked as (
            select t.id, t.status, t.executor_type, t.retry_at, t.priority, t.slot_group,
                   _deps_derived(t.depends_on, t.unmet_deps) as derived,
                   _deps_apart(t.depends_on, t.unmet_deps) as apart
            from dec join tasks t on t.id = dec.id
            where t.status in ('pending', 'paused')
            for no key update of t
        ), queued as (
            insert into task_queue (task_id, executor_type, ready_at, priority, slot_group)
            select l.id, l.executor_type, l.retry_at, l.priority, l.slot_group
            from locked l
            where l.derived and l.status = 'pending'
            returning 1
        )
        select exists (select 1 from queued),
               (select array_agg(l.id) from locked l where not l.derived and not l.apart),
               (select array_agg(l.id) from locked l where l.apart)
        into v_became_ready, v_counted, v_apart;
    end if;
    -- Tasks with several dependencies (fan-in): their count apart goes down (issue 14: a
    -- HOT update of a narrow row, where the decrement of the task row wrote a new
    -- version of it per dependency); those reaching zero join the queue, with the
    -- columns of their rows (held since the lock above, so as they are now). A task
    -- without a row here had nothing left unmet (none is written for 0).
    if v_apart is not null then
        with counts as (
            select dn.id, count(*)::integer as n from unnest(v_down) as dn(id)
            where dn.id = any(v_apart) group by dn.id order by dn.id
        ), upd as (
            update task_deps_unmet u
            set unmet = greatest(u.unmet - counts.n, 0)
            from counts
            where u.task_id = counts.id
            returning u.task_id, u.unmet
        ), queued as (
            insert into task_queue (task_id, executor_type, ready_at, priority, slot_group)
            select t.id, t.executor_type, t.retry_at, t.priority, t.slot_group
            from upd join tasks t on t.id = upd.task_id
            where upd.unmet = 0 and t.status = 'pending'
            returning 1
        )
        select v_became_ready or exists (select 1 from queued) into v_became_ready;
    end if;
    -- Rows an older package wrote with a count on the row: decrement; those reaching
    -- zero join the queue.
    -- Their rows are locked already (above), so the order of this update does not matter.
    if v_counted is not null then
        with counts as (
            select dn.id, count(*)::integer as n from unnest(v_down) as dn(id)
            where dn.id = any(v_counted) group by dn.id order by dn.id
        ), upd as (
            update tasks t
            set unmet_deps = greatest(t.unmet_deps - counts.n, 0)
            from counts
            where t.id = counts.id
            returning t.id, t.unmet_deps, t.status, t.executor_type, t.retry_at, t.priority, t.slot_group
        ), queued as (
            insert into task_queue (task_id, executor_type, ready_at, priority, slot_group)
            select upd.id, upd.executor_type, upd.retry_at, upd.priority, upd.slot_group
            from upd
            where upd.unmet_deps = 0 and upd.status = 'pending'
            returning 1
        )
        select v_became_ready or exists (select 1 from queued) into v_became_ready;
    end if;

    -- A final failure or a cancellation finishes every transitive dependent.
    if v_failed is not null then
        select array_agg(f.task_id), array_agg(f.run_id) into v_failed, v_dep_runs
        from _finish_dependents(v_failed, 'failed', 'dependency failed', p_now) f;
        v_ended := v_ended || v_failed;
        v_fin_runs := v_fin_runs || v_dep_runs;
        v_fin_statuses := v_fin_statuses || array_fill('failed'::text, array[coalesce(cardinality(v_dep_runs), 0)]);
    end if;
    if v_cancelled is not null then
        select array_agg(f.task_id), array_agg(f.run_id) into v_cancelled, v_dep_runs
        from _finish_dependents(v_cancelled, 'cancelled', 'dependency cancelled', p_now) f;
        v_ended := v_ended || v_cancelled;
        v_fin_runs := v_fin_runs || v_dep_runs;
        v_fin_statuses := v_fin_statuses || array_fill('cancelled'::text, array[coalesce(cardinality(v_dep_runs), 0)]);
    end if;

    perform _end_deferred_jobs(v_ended);
    perform _count_finished(v_fin_runs, v_fin_statuses);
    if v_became_ready or v_requeued then
        perform _notify('tasks_ready');
    end if;

    if coalesce(cardinality(v_ords), 0) = cardinality(p_ords) then
        return query select * from unnest(v_ords, v_ids, v_outcomes, v_statuses) as r(ord, task_id, outcome, status)
                     order by r.ord;
        return;
    end if;
    -- Some rows were refused: classify them from the task's row as it is now (this
    -- statement's snapshot includes whatever a concurrent change the update waited for).
    -- The applied rows' results go to their input positions first (a loop, not a join:
    -- hash joins are off here).
    v_out := array_fill(null::text, array[cardinality(p_ords)]);
    v_out_status := v_out;
    for j in 1..coalesce(cardinality(v_pos), 0) loop
        v_out[v_pos[j]] := v_outcomes[j];
        v_out_status[v_pos[j]] := v_statuses[j];
    end loop;
    return query
    select i.ord, i.task_id,
           coalesce(v_out[i.k],
                    case when t.id is null then 'not_found'
                         when coalesce(i.attempt, 0) <> 0 and i.attempt <> t.attempts then 'stale'
                         when i.status = t.status then 'ignored'
                         else 'invalid' end),
           coalesce(v_out_status[i.k], t.status)
    from unnest(p_ords, p_task_ids, p_statuses, p_attempts) with ordinality as i(ord, task_id, status, attempt, k)
    left join tasks t on t.id = i.task_id
    order by i.ord;
end
$$;

-- _change_tasks is _apply_task_changes for the functions' own changes (lease expiry,
-- timeouts, deferred-job outcomes): a status, an error and the fencing attempt per
-- task, no execution name or output, ordinals 1…n, at the caller's p_now.
create function {{.schema}}_api._change_tasks(p_task_ids bigint[], p_statuses text[], p_errors text[], p_attempts integer[],
                                               p_now timestamptz)
returns table (ord integer, task_id bigint, outcome text, status text)
language sql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
    select * from _apply_task_changes(
        array(select generate_series(1, cardinality(p_task_ids))), p_task_ids, p_statuses,
        null::text[], p_errors, null::jsonb[], p_attempts, p_now)
$$;
