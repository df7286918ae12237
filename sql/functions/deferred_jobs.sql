-- claim_deferred_jobs leases up to p_limit due deferred jobs (pending or polling with
-- next_poll_at reached — new jobs are due at once, and a claimed job's next_poll_at is its
-- lease expiry, so a job whose poller died is due again when the lease runs out), oldest
-- due first, FOR UPDATE SKIP LOCKED. Each becomes polling with attempts + 1 (the fencing
-- token for report_deferred_polls). p_now is the time the claim runs at: what is due,
-- and where the lease ends; null or left out, it is now(), the transaction's start
-- (pgstore passes its Config.Now when one is set).
create function {{.schema}}_api.claim_deferred_jobs(
    p_claimer text,
    p_limit integer,
    p_lease interval default '1 minute',
    p_now timestamptz default now()
)
returns setof {{.schema}}.deferred_jobs
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
    v_now constant timestamptz := coalesce(p_now, now());
begin
    perform _check_claim(p_claimer, p_limit, p_lease);
    return query
    with picked as (
        select j.id from deferred_jobs j
        where j.status in ('pending', 'polling') and j.next_poll_at <= v_now
        order by j.next_poll_at, j.id
        limit p_limit
        for no key update skip locked
    )
    update deferred_jobs j
    set status = 'polling', attempts = j.attempts + 1, claimed_by = p_claimer,
        lease_expires_at = v_now + p_lease, next_poll_at = v_now + p_lease,
        started_at = coalesce(j.started_at, v_now)
    from picked
    where j.id = picked.id
    returning j.*;
end
$$;

-- report_deferred_polls applies poll results (parallel arrays; all but the first two may
-- be null) and returns one row per input: ord, job_id, outcome (applied | invalid | stale |
-- not_found | ignored for a repeated id), the job's status and, when the report finished
-- the task, task_status.
--   running   → last_polled_at = now, next_poll_at = now + next_poll_after (default 10 s)
--   completed → the job completes; the task succeeds once every job of it completed
--   failed    → the job fails; its task fails through the task rules (retry applies,
--               its other jobs are cancelled, dependents fail, the run completes)
-- The task change happens in this call, by the same code as set_task_states. p_now is
-- the time of the reports (null or left out: now(), the transaction's start); the task's
-- own change (retry_at, finished_at) is stamped by that code at the same time.
create function {{.schema}}_api.report_deferred_polls(
    p_job_ids bigint[],
    p_results text[],
    p_errors text[] default null,
    p_next_poll_after interval[] default null,
    p_attempts integer[] default null,
    p_now timestamptz default now()
)
returns table (ord integer, job_id bigint, outcome text, status text, task_status text)
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
    n integer := coalesce(cardinality(p_job_ids), 0);
    v_bad integer;
    v_task_ids bigint[];
    v_task_statuses text[];
    v_task_errors text[];
    v_ords integer[];
    v_jobs bigint[];
    v_tasks bigint[];
    v_results text[];
    v_outcomes text[];
    v_statuses text[];
    v_done_tasks bigint[];
    v_done_statuses text[];
    v_now constant timestamptz := coalesce(p_now, now());
begin
    if p_job_ids is null then
        raise exception using errcode = 'OK422', column = 'job_ids', message = 'job_ids must not be null';
    end if;
    if coalesce(cardinality(p_results), 0) <> n
       or (p_errors is not null and cardinality(p_errors) <> n)
       or (p_next_poll_after is not null and cardinality(p_next_poll_after) <> n)
       or (p_attempts is not null and cardinality(p_attempts) <> n) then
        raise exception using errcode = 'OK422', column = 'results',
            message = format('results, errors, next_poll_after and attempts must have %s elements like job_ids', n);
    end if;
    if n = 0 then
        return;
    end if;
    v_bad := array_position(p_job_ids, null);
    if v_bad is not null then
        raise exception using errcode = 'OK422', column = 'job_ids', message = format('job_ids[%s] is null', v_bad);
    end if;
    p_results := _lower_statuses(p_results);
    perform _check_poll_after(p_next_poll_after);
    select s.i into v_bad from unnest(p_results) with ordinality as s(r, i)
    where s.r is null or s.r not in ('running', 'completed', 'failed') limit 1;
    if found then
        raise exception using errcode = 'OK422', column = 'results',
            message = format('unknown poll result %s at results[%s]', coalesce(quote_literal(p_results[v_bad]), 'NULL'), v_bad);
    end if;
    if p_next_poll_after is not null and exists (select 1 from unnest(p_next_poll_after) a where a < interval '0') then
        raise exception using errcode = 'OK422', column = 'next_poll_after', message = 'next_poll_after must not be negative';
    end if;
    p_errors := coalesce(p_errors, array_fill(null::text, array[n]));
    p_next_poll_after := coalesce(p_next_poll_after, array_fill(null::interval, array[n]));
    p_attempts := coalesce(p_attempts, array_fill(null::integer, array[n]));

    -- Lock the jobs' tasks first (tasks before jobs, the order set_task_states uses): two
    -- reports completing a task's last two jobs then serialise, and the second one's
    -- "all jobs completed" check sees the first one's completion.
    perform 1 from tasks t
    where t.id = any(array(select j.task_id from deferred_jobs j where j.id = any(p_job_ids)))
    order by t.id
    for no key update;

    -- Decide, apply, and find the tasks these reports finish, in one statement; the
    -- outcomes are kept in arrays (a temporary table would invalidate this function's
    -- cached plans on every call). The update finds each row by the ctid its lock
    -- returned, not by a second descent of the primary key.
    --
    -- A failed job fails its task; a task succeeds when every one of its jobs has
    -- completed. All parts of the statement see the jobs as they were before its
    -- update, so "every job completed afterwards" is counted as: the task's jobs not
    -- completed before are exactly the ones this call completes (those were pending or
    -- polling; a finished job never changes again; a job that becomes completed, and a
    -- new job of the task, both need the task's lock, taken above, so none can appear
    -- between that lock and this statement's snapshot).
    with input as (
        select i.*, row_number() over (partition by i.job_id order by i.ord) as rep
        from unnest(p_job_ids, p_results, p_errors, p_next_poll_after, p_attempts) with ordinality
            as i(job_id, result, error, after, attempt, ord)
    ), locked as (
        select j.ctid as tid, j.id, j.task_id, j.status, j.attempts, j.service_type, j.job_id
        from deferred_jobs j where j.id = any(p_job_ids)
        order by j.id
        for no key update
    ), decided as (
        select i.*, l.tid, l.task_id, l.status as old_status, l.service_type, l.job_id as external_id,
            case
                when l.id is null then 'not_found'
                when i.rep > 1 then 'ignored'
                when coalesce(i.attempt, 0) <> 0 and i.attempt <> l.attempts then 'stale'
                when l.status not in ('pending', 'polling') then 'invalid'
                else 'applied'
            end as outcome
        from input i left join locked l on l.id = i.job_id
    ), updated as (
        update deferred_jobs j
        set status = case d.result when 'running' then 'polling' else d.result end,
            last_polled_at = v_now,
            next_poll_at = case when d.result = 'running' then v_now + coalesce(d.after, interval '10 seconds') else j.next_poll_at end,
            lease_expires_at = null,
            claimed_by = '',
            started_at = coalesce(j.started_at, v_now),
            finished_at = case when d.result <> 'running' then v_now end,
            error = case when d.result = 'failed' then coalesce(nullif(d.error, ''), 'deferred job failed') else j.error end
        from decided d
        where j.ctid = d.tid and d.outcome = 'applied'
    ), reported as (
        -- An applied row's update cannot miss (its row is locked, found by its ctid):
        -- its new status is known without joining the update's output back.
        select d.ord::integer as ord, d.job_id, d.task_id, d.result, d.outcome,
               case when d.outcome = 'applied' then
                   case d.result when 'running' then 'polling' else d.result end
               else d.old_status end as status
        from decided d
    ), finished as (
        select d.task_id,
               case when bool_or(d.result = 'failed') then 'failed' else 'success' end as st,
               min(format('deferred job %s (%s) failed: %s', d.external_id, d.service_type,
                          coalesce(nullif(d.error, ''), 'no error given'))) filter (where d.result = 'failed') as err
        from decided d
        where d.outcome = 'applied' and d.result in ('completed', 'failed')
        group by d.task_id
        having bool_or(d.result = 'failed')
            or count(*) = (select count(*) from deferred_jobs j where j.task_id = d.task_id and j.status <> 'completed')
    )
    select r.ords, r.jobs, r.tasks, r.results, r.outcomes, r.statuses, f.task_ids, f.sts, f.errs
    into v_ords, v_jobs, v_tasks, v_results, v_outcomes, v_statuses, v_task_ids, v_task_statuses, v_task_errors
    from (select array_agg(r.ord order by r.ord) as ords, array_agg(r.job_id order by r.ord) as jobs,
                 array_agg(r.task_id order by r.ord) as tasks, array_agg(r.result order by r.ord) as results,
                 array_agg(r.outcome order by r.ord) as outcomes, array_agg(r.status order by r.ord) as statuses
          from reported r) r,
         (select array_agg(f.task_id order by f.task_id) as task_ids, array_agg(f.st order by f.task_id) as sts,
                 array_agg(f.err order by f.task_id) as errs
          from finished f) f;

    if v_task_ids is not null then
        select array_agg(a.task_id), array_agg(a.status) into v_done_tasks, v_done_statuses
        from _change_tasks(v_task_ids, v_task_statuses, v_task_errors, null, v_now) a
        where a.outcome in ('applied', 'retrying');
    end if;
    return query
    select o.ord, o.job_id, o.outcome, o.status,
           case when o.outcome = 'applied' and o.result <> 'running' then t.status end
    from unnest(v_ords, v_jobs, v_tasks, v_results, v_outcomes, v_statuses) as o(ord, job_id, task_id, result, outcome, status)
    left join unnest(v_done_tasks, v_done_statuses) as t(task_id, status) on t.task_id = o.task_id
    order by o.ord;
end
$$;

-- update_deferred_job_status is the single-row form: completed and failed go through
-- report_deferred_polls (so the task follows), polling marks a pending job as being
-- polled, cancelled ends an unfinished job. Returns the outcome (applied | ignored |
-- invalid); OK404 for an unknown job.
create function {{.schema}}_api.update_deferred_job_status(p_job_id bigint, p_status text, p_error text default null)
returns text
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
    v_status text;
begin
    p_status := lower(p_status);
    if p_status is null or p_status not in ('pending', 'polling', 'completed', 'failed', 'cancelled') then
        raise exception using errcode = 'OK422', column = 'status',
            message = format('unknown deferred job status %s', coalesce(quote_literal(p_status), 'NULL'));
    end if;
    select j.status into v_status from deferred_jobs j where j.id = p_job_id for no key update;
    if not found then
        raise exception using errcode = 'OK404', message = format('deferred job %s not found', p_job_id);
    end if;
    if v_status = p_status then
        return 'ignored';
    end if;
    if v_status not in ('pending', 'polling') or p_status = 'pending' then
        return 'invalid';
    end if;
    if p_status in ('completed', 'failed') then
        return (select r.outcome from report_deferred_polls(array[p_job_id], array[p_status], array[p_error]) r);
    end if;
    update deferred_jobs j
    set status = p_status,
        started_at = coalesce(j.started_at, now()),
        finished_at = case when p_status = 'cancelled' then now() end,
        error = coalesce(nullif(p_error, ''), j.error),
        lease_expires_at = case when p_status = 'cancelled' then null else j.lease_expires_at end,
        claimed_by = case when p_status = 'cancelled' then '' else j.claimed_by end
    where j.id = p_job_id;
    return 'applied';
end
$$;

-- cancel_deferred_jobs_for_task cancels a task's unfinished deferred jobs and returns how
-- many. OK404 for an unknown task.
create function {{.schema}}_api.cancel_deferred_jobs_for_task(p_task_id bigint)
returns integer
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
    v_count integer;
begin
    if not exists (select 1 from tasks t where t.id = p_task_id) then
        raise exception using errcode = 'OK404', message = format('task %s not found', p_task_id);
    end if;
    update deferred_jobs j
    set status = 'cancelled', finished_at = now(), claimed_by = '', lease_expires_at = null
    where j.task_id = p_task_id and j.status in ('pending', 'polling');
    get diagnostics v_count = row_count;
    return v_count;
end
$$;

-- _river_job_not_running raises OK409 for a River job that the triggerer's group
-- statement (triggerer/rivercomplete.go) found no longer running: the statement fails,
-- so nothing of the group is applied, and the triggerer leaves that poll out of the
-- group (it recognises the error by its code and its table, river_job). It returns
-- bigint only so that a select list can call it; it never returns.
create function {{.schema}}_api._river_job_not_running(p_river_job_id bigint)
returns bigint
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
as $$
begin
    raise exception using errcode = 'OK409', table = 'river_job',
        message = format('river job %s is not running: its poll result is not applied', p_river_job_id),
        hint = 'River rescued, cancelled or deleted the job while it polled; the group is committed without it.';
end
$$;
