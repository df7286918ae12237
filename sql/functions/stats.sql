-- stats returns one row of figures for monitoring. Each comes from an index over live
-- rows or from a counter, never from a scan of history, so a call costs the same on an
-- install with a year of finished runs as on a fresh one (TestStatsPlanReadsNoHistory
-- reads its plan; docs/operations.md shows it):
--
--   ready_tasks          tasks a claim could take now (task_queue, ready_at due)
--   delayed_tasks        ready tasks waiting for their retry time
--   oldest_ready_age     how long ago the head of the queue (the task the next claim
--                        takes first) was created or, for a retry, became due; null
--                        when nothing is ready. It grows while nobody claims.
--   tasks_in_flight      dispatched or running tasks (the tasks of pending, running
--                        and paused runs, by run: costs the live runs' tasks, not history)
--   tasks_unfinished     every task of an unfinished run not yet finished (run counters)
--   leases_due           lease rows (one per claim batch) whose lease has ended and the
--                        sweep (expire_task_leases) has not dealt with yet
--   deadlines_due        tasks past their timeout not yet failed by fail_timed_out_tasks
--   runs_pending, runs_running, runs_paused
--   runs_succeeded, runs_failed, runs_cancelled
--                        runs that finished within p_window (default 1 hour)
--   runs_estimate        all runs, history included: the planner's estimate (reltuples,
--                        kept by ANALYZE/autovacuum), -1 before the first ANALYZE
--   deferred_jobs_active pending or polling deferred jobs
--   deferred_jobs_due    those whose next poll is due
create function {{.schema}}_api.stats(p_window interval default '1 hour')
returns table (
    ready_tasks bigint, delayed_tasks bigint, oldest_ready_age interval,
    tasks_in_flight bigint, tasks_unfinished bigint, leases_due bigint, deadlines_due bigint,
    runs_pending bigint, runs_running bigint, runs_paused bigint,
    runs_succeeded bigint, runs_failed bigint, runs_cancelled bigint, runs_estimate bigint,
    deferred_jobs_active bigint, deferred_jobs_due bigint
)
language plpgsql
stable
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
-- Every figure has an index; with autovacuum behind, stale statistics must not turn
-- one into a scan of history.
set enable_seqscan = off
as $$
begin
    if p_window is null or p_window < interval '0' then
        raise exception using errcode = 'OK422', column = 'window',
            message = format('window must not be negative, got %s', coalesce(p_window::text, 'NULL'));
    end if;
    return query
    with queue as (
        select count(*) filter (where q.ready_at is null or q.ready_at <= now()) as ready,
               count(*) filter (where q.ready_at > now()) as delayed
        from task_queue q
    ), head as (
        select now() - greatest(t.created_at, q.ready_at) as age
        from task_queue q join tasks t on t.id = q.task_id
        where q.ready_at is null or q.ready_at <= now()
        order by q.task_id
        limit 1
    ), live as (
        select r.id, r.status, r.tasks_total - r.tasks_finished as unfinished
        from runs r
        where r.status in ('pending', 'running', 'paused')
    ), finished as (
        select count(*) filter (where r.status = 'success') as succeeded,
               count(*) filter (where r.status = 'failed') as failed,
               count(*) filter (where r.status = 'cancelled') as cancelled
        from runs r
        where r.status in ('success', 'failed', 'cancelled') and r.finished_at >= now() - p_window
    )
    select queue.ready, queue.delayed, (select head.age from head),
           (select count(*) from live join tasks t on t.run_id = live.id
            where t.status in ('dispatched', 'running')),
           (select coalesce(sum(live.unfinished), 0)::bigint from live),
           (select count(*) from task_leases l where l.expires_at <= now()),
           (select count(*) from task_deadlines d where d.timeout_at <= now()),
           (select count(*) from live where live.status = 'pending'),
           (select count(*) from live where live.status = 'running'),
           (select count(*) from live where live.status = 'paused'),
           finished.succeeded, finished.failed, finished.cancelled,
           (select c.reltuples::bigint from pg_class c where c.oid = '{{.schema}}.runs'::regclass),
           (select count(*) from deferred_jobs j where j.status in ('pending', 'polling')),
           (select count(*) from deferred_jobs j where j.status in ('pending', 'polling') and j.next_poll_at <= now())
    from queue, finished;
end
$$;
