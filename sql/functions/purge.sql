-- purge_runs deletes one batch of history: runs that finished (success, failed or
-- cancelled) more than p_older_than ago, oldest first, with their tasks, log chunks, log
-- sizes, deferred jobs, deadline rows and (a fair run's) slot groups, and the lease rows
-- older than the period whose tasks are none of them still dispatched. It returns what it deleted; call it
-- until it returns runs = 0 and tasks = 0 and leases = 0 (purge_all_runs does, committing
-- after each batch). Each call is one transaction holding row locks only on what it
-- deletes, so the lock time is bounded by the batch, not by the history.
--
-- p_limit bounds the batch in tasks (1 … 10,000): whole runs are taken, oldest first,
-- while their tasks fit; a run bigger than p_limit is purged p_limit tasks at a time
-- and its row goes with the last batch (until then it shows only the tasks left).
--
-- A run is purged only when nothing live refers to it: its status is terminal and its
-- finished_at older than the period, none of its tasks is unfinished, none of its
-- deferred jobs is pending or polling, and no transaction holds a lock on it (FOR
-- UPDATE SKIP LOCKED: several purgers at once take disjoint runs, and a run someone is
-- reading for update waits for the next call). A terminal run stays terminal (retry_task
-- refuses finished runs), so what is checked here under the lock holds until commit.
--
-- Why batched deletes and not time partitions: docs/architecture.md, "Retention".
create function {{.schema}}_api.purge_runs(p_older_than interval, p_limit integer default 1000)
returns table (runs bigint, tasks bigint, log_chunks bigint, deferred_jobs bigint, leases bigint)
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
-- Every statement below is meant as a key or index probe per id, never a scan of the
-- history it is deleting (whose size is the reason this function exists); as for
-- expire_task_leases, the generic plan is kept from choosing otherwise.
set enable_seqscan = off
set enable_hashjoin = off
set enable_mergejoin = off
set enable_bitmapscan = off
as $$
#variable_conflict use_column
declare
    v_cutoff timestamptz;
    c_runs refcursor;
    v_run bigint;
    v_size integer;
    v_whole bigint[] := '{}';
    v_partial bigint;
    v_budget integer;
    v_tasks bigint[];
    v_gone bigint[];
    n_runs bigint := 0;
    n_tasks bigint := 0;
    n_logs bigint := 0;
    n_jobs bigint := 0;
    n_leases bigint := 0;
begin
    if p_older_than is null or p_older_than < interval '0' then
        raise exception using errcode = 'OK422', column = 'older_than',
            message = format('older_than must not be negative, got %s', coalesce(p_older_than::text, 'NULL'));
    end if;
    perform _check_limit(p_limit);
    v_cutoff := now() - p_older_than;

    -- Candidates through runs_finished_idx (migration 004), oldest first, locked one
    -- at a time as the cursor reaches them (an explicit FETCH reads one row), and only
    -- as many as the batch takes: the checks below read a run's tasks, so checking
    -- runs the batch will not delete would cost more than the delete (before: up to
    -- p_limit runs were locked and checked per batch, for a batch of one 1,000-task
    -- run; docs/architecture.md, "Retention", has what it cost). A run with an
    -- unfinished task or a live deferred job is passed over before the budget counts,
    -- so one held run at the head never stops the purge behind it
    -- (TestPurgeRemovesOnlyOldFinishedHistory's batches of one). Whole runs while
    -- their tasks fit the budget (a run counts at least 1, so an empty run uses budget
    -- too); the first run that does not fit is taken in part when nothing else was.
    v_budget := p_limit;
    open c_runs for
        select r.id, r.tasks_total
        from runs r
        where r.status in ('success', 'failed', 'cancelled') and r.finished_at < v_cutoff
        order by r.finished_at, r.id
        for update skip locked;
    loop
        fetch c_runs into v_run, v_size;
        exit when not found;
        continue when exists (
                select 1 from tasks t
                where t.run_id = v_run and t.status not in ('success', 'failed', 'cancelled'))
            or exists (
                select 1 from tasks t join deferred_jobs j on j.task_id = t.id
                where t.run_id = v_run and j.status in ('pending', 'polling'));
        if greatest(v_size, 1) <= v_budget then
            v_whole := v_whole || v_run;
            v_budget := v_budget - greatest(v_size, 1);
            exit when v_budget = 0;
        else
            if cardinality(v_whole) = 0 then
                v_partial := v_run;
            end if;
            exit;
        end if;
    end loop;
    close c_runs;

    -- tasks_total is a counter, not a promise: the ids come from the tasks themselves,
    -- and a run is deleted below only when none of its tasks is left. Not locked
    -- here: the deletes below lock what they delete, nothing changes a finished run's
    -- tasks meanwhile (its row is locked, and a finished run is never reopened), and
    -- a lock taken first would write every task's row twice (a lock, then the delete).
    -- Run by run through tasks' (run_id, task_index) key: ordered by id, the generic
    -- plan walked tasks_pkey from the lowest id and filtered on run_id, which on an
    -- aged table reads every task older than the batch's (365,000 rows for 1,000, 1.4 s).
    v_tasks := array(
        select t.id
        from unnest(v_whole || v_partial) with ordinality as r(id, n)
        cross join lateral (
            select t.id from tasks t
            where t.run_id = r.id
            order by t.task_index
            limit p_limit) t
        order by r.n
        limit p_limit);

    -- Children first, by key, so the foreign keys' cascades find nothing left to do.
    delete from task_logs l where l.task_id = any(v_tasks);
    get diagnostics n_logs = row_count;
    delete from task_log_sizes z where z.task_id = any(v_tasks);
    delete from deferred_jobs j where j.task_id = any(v_tasks);
    get diagnostics n_jobs = row_count;
    -- task_queue_forget_deleted_tasks removes their queue and deadline rows.
    delete from tasks t where t.id = any(v_tasks);
    get diagnostics n_tasks = row_count;
    with gone as (
        delete from runs r
        where r.id = any(v_whole || v_partial)
          and not exists (select 1 from tasks t where t.run_id = r.id)
        returning r.id
    )
    select array_agg(gone.id) into v_gone from gone;
    n_runs := coalesce(cardinality(v_gone), 0);
    -- A fair run's own slot groups (slot_groups.fair_run, migration 007's index) go
    -- with it: its tasks, the only rows that named them, are gone, and a finished run
    -- is never placed again. Groups of pools alone (fair_run = 0) are shared and stay.
    delete from slot_groups g where g.fair_run = any(v_gone) and g.fair_run <> 0;

    -- Lease rows are written per claim and removed by expire_task_leases once due;
    -- one the sweep never reached (no sweeper ran, or it fell behind) is removed here
    -- when it is older than the period and names no task still dispatched.
    -- (A row that still names a dispatched task is passed over before the limit counts.)
    with old as (
        select l.id from task_leases l
        where l.expires_at < v_cutoff
          and not exists (
              select 1
              from unnest(l.task_ids) as r(ids)
              join tasks t on t.id >= lower(r.ids) and t.id < upper(r.ids)
              where t.status = 'dispatched')
        order by l.expires_at
        limit p_limit
        for update skip locked
    )
    delete from task_leases l
    using old
    where l.id = old.id;
    get diagnostics n_leases = row_count;

    return query select n_runs, n_tasks, n_logs, n_jobs, n_leases;
end
$$;

-- purge_all_runs calls purge_runs until a batch deletes nothing, committing after each
-- batch, so locks last one batch and a kill loses at most the batch in progress. For
-- pg_cron or a cron job's psql: CALL <schema>_api.purge_all_runs('30 days'). It must be
-- called outside a transaction block (a procedure commits only there). p_max_rate, when
-- set, caps the pace in tasks per second as PurgeParams.MaxRate does: each batch starts
-- no sooner than its tasks ÷ p_max_rate seconds after the one before.
create procedure {{.schema}}_api.purge_all_runs(p_older_than interval, p_limit integer default 1000,
    p_max_rate double precision default null)
language plpgsql
-- No SET clause (search_path included): a procedure with one cannot commit.
as $$
declare
    v record;
    v_start timestamptz;
begin
    if p_max_rate is not null and (p_max_rate < 0 or p_max_rate = 'NaN' or p_max_rate = 'Infinity') then
        raise exception using errcode = 'OK422', column = 'max_rate',
            message = format('max_rate must be a finite number of tasks per second, not negative, got %s', p_max_rate);
    end if;
    loop
        v_start := clock_timestamp();
        select * into v from {{.schema}}_api.purge_runs(p_older_than, p_limit);
        commit;
        exit when v.runs = 0 and v.tasks = 0 and v.leases = 0;
        if p_max_rate > 0 then
            perform pg_sleep(v.tasks / p_max_rate - extract(epoch from clock_timestamp() - v_start));
        end if;
    end loop;
end
$$;
