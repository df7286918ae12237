-- expire_task_leases returns up to p_limit dispatched tasks whose lease ran out to
-- pending (the attempt is not counted as a failure; the next claim increments it, so
-- the old claimer's late report is stale). Returns one row per task, like set_task_states.
--
-- It works through the due lease rows, oldest first, 1,000 at a time, skipping rows
-- another sweeper holds, until it has expired p_limit tasks or no due row is left; the
-- rows it finishes with are deleted. So fewer than p_limit rows back means nothing
-- else is due (but rows a concurrent sweeper holds): a caller that sweeps again while
-- the batch was full drains the backlog. Most due rows only name finished tasks
-- (nothing is written when a claimed task finishes); a call used to read at most 200
-- of them, and with one-task claims at 500/s a once-a-second sweep fell behind for
-- good (a killed scheduler's tasks came back after 33 s with an 8 s lease) and
-- returned nothing while expired tasks waited behind the finished ones
-- (TestLeaseSweepKeepsUpWithSmallClaims, storetest's LeaseSweepPastFinishedClaims).
--
-- p_now is the time the sweep runs at: a lease ended when its end is at or before it.
-- Null or left out, it is now(), the transaction's start; pgstore passes its Config.Now
-- when one is set, so tests move time instead of waiting for it.
--
-- A task is returned once however many due lease rows name it (a task claimed,
-- finished, retried by an operator and claimed again is in two): the rows' ranges are
-- merged before the tasks are read. Each task's row used to be read once per lease row,
-- and the repeats came back as extra 'ignored' rows that the SQLite store, which reads
-- tasks, did not return (storetest's ExpireReturnsEachTaskOnce).
create function {{.schema}}_api.expire_task_leases(p_limit integer, p_now timestamptz default now())
returns table (ord integer, task_id bigint, outcome text, status text)
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
-- Each range must be a key range scan of tasks: a generic plan otherwise scanned all of
-- tasks once per lease row (355 ms for 50 rows at 50,000 tasks; 25 ms with these).
set enable_seqscan = off
set enable_hashjoin = off
set enable_mergejoin = off
set enable_bitmapscan = off
as $$
#variable_conflict use_column
declare
    v_rows bigint[];
    v_kept bigint[] := '{}';
    v_ids bigint[];
    v_attempts integer[];
    v_done integer := 0;
    v_now constant timestamptz := coalesce(p_now, now());
    n integer;
begin
    perform _check_limit(p_limit);
    loop
        -- Rows this call kept (a task of theirs left over or locked by a reporter) are
        -- not read again: SKIP LOCKED does not skip a transaction's own locks.
        v_rows := array(
            select l.id from task_leases l
            where l.expires_at <= v_now and l.id <> all(v_kept)
            order by l.expires_at
            limit 1000
            for update skip locked);
        exit when cardinality(v_rows) = 0;
        -- The rows name the candidates; the task's own row decides. Locked here and
        -- fenced by attempt below: a report racing the expiry wins or loses whole.
        select array_agg(x.id order by x.id), array_agg(x.attempts order by x.id) into v_ids, v_attempts
        from (
            -- the union of the rows' ranges: each task once, however many rows name it
            select t.id, t.attempts
            from unnest((select range_agg(r.ids)
                         from task_leases l cross join unnest(l.task_ids) as r(ids)
                         where l.id = any(v_rows))) as u(ids)
            join tasks t on t.id >= lower(u.ids) and t.id < upper(u.ids)
            where t.status = 'dispatched' and t.lease_expires_at <= v_now
            order by t.lease_expires_at, t.id
            limit p_limit - v_done
            for no key update of t skip locked
        ) x;
        n := coalesce(cardinality(v_ids), 0);
        if n > 0 then
            return query
            select c.ord + v_done, c.task_id, c.outcome, c.status
            from _change_tasks(v_ids, array_fill('pending'::text, array[n]),
                               array_fill('lease expired'::text, array[n]), v_attempts, v_now) c;
            v_done := v_done + n;
        end if;
        -- A lease row is done once none of its tasks is still dispatched under an ended
        -- lease (one left over by p_limit, or locked by a reporter, keeps the row).
        delete from task_leases l
        where l.id = any(v_rows)
          and not exists (
              select 1
              from unnest(l.task_ids) as r(ids)
              join tasks t on t.id >= lower(r.ids) and t.id < upper(r.ids)
              where t.status = 'dispatched' and t.lease_expires_at <= v_now);
        v_kept := v_kept || array(select l.id from task_leases l where l.id = any(v_rows));
        exit when v_done >= p_limit;
    end loop;
end
$$;

-- fail_timed_out_tasks fails up to p_limit dispatched or running tasks past their
-- timeout (timeout_seconds from started_at, else dispatched_at) with error
-- 'timeout after Ns', under the retry rule; their deferred jobs are cancelled. p_now is
-- the time the sweep runs at, as for expire_task_leases (null or left out: now()).
create function {{.schema}}_api.fail_timed_out_tasks(p_limit integer, p_now timestamptz default now())
returns table (ord integer, task_id bigint, outcome text, status text)
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
-- the due deadlines drive key probes of tasks, never a scan of all of tasks
set enable_seqscan = off
set enable_hashjoin = off
set enable_mergejoin = off
set enable_bitmapscan = off
as $$
#variable_conflict use_column
declare
    v_ids bigint[];
    v_attempts integer[];
    v_errors text[];
    v_now constant timestamptz := coalesce(p_now, now());
    n integer;
begin
    perform _check_limit(p_limit);
    select array_agg(x.id order by x.id), array_agg(x.attempts order by x.id),
           array_agg(format('timeout after %ss', x.timeout_seconds) order by x.id)
    into v_ids, v_attempts, v_errors
    from (
        select t.id, t.attempts, t.timeout_seconds
        from task_deadlines d join tasks t on t.id = d.task_id
        where d.timeout_at <= v_now
          and t.status in ('dispatched', 'running') and t.timeout_at <= v_now
        order by d.timeout_at
        limit p_limit
        for no key update of t skip locked
    ) x;
    n := coalesce(cardinality(v_ids), 0);
    if n > 0 then
        return query select * from _change_tasks(v_ids, array_fill('failed'::text, array[n]), v_errors, v_attempts, v_now);
    end if;
    -- The state machine removes a finished task's deadline; this clears any row that
    -- outlived its task all the same, so no due row is read twice.
    delete from task_deadlines d
    where d.timeout_at <= v_now
      and not exists (
          select 1 from tasks t
          where t.id = d.task_id and t.status in ('dispatched', 'running') and t.timeout_at is not null);
end
$$;
