-- _count_finished adds tasks that just reached a terminal status to their runs' counters
-- and finishes each run whose last task that was: failed if any task failed, else
-- cancelled if any was cancelled, else success. Terminal runs keep their status.
-- Runs are locked in id order so concurrent batches cannot deadlock on them.
-- One notification on <schema>_runs lists the runs that finished (at most 100).
create function {{.schema}}_api._count_finished(p_run_ids bigint[], p_statuses text[])
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
    v_finished jsonb;
    v_count integer;
    v_terminal bigint[];
begin
    if coalesce(cardinality(p_run_ids), 0) = 0 then
        return;
    end if;
    -- The lock returns each run as it is now (READ COMMITTED follows a concurrent
    -- update to the newest version), so the runs that were terminal already are known
    -- here, not read again by the update (issue 14: that second probe per run, and the
    -- join it needed, cost the update as much as its writes).
    select array_agg(l.id) filter (where l.status in ('success', 'failed', 'cancelled'))
    into v_terminal
    from (select r.id, r.status from runs r where r.id = any(p_run_ids) order by r.id for no key update) l;

    with delta as (
        select d.run_id,
               count(*) as finished,
               count(*) filter (where d.status = 'failed') as failed,
               count(*) filter (where d.status = 'cancelled') as cancelled
        from unnest(p_run_ids, p_statuses) as d(run_id, status)
        group by d.run_id
    ), counted as (
        -- r is the row locked above (SET reads the version it replaces), so its status
        -- is the one the lock saw
        update runs r
        set tasks_finished = r.tasks_finished + delta.finished,
            tasks_failed = r.tasks_failed + delta.failed,
            tasks_cancelled = r.tasks_cancelled + delta.cancelled,
            status = case
                when r.status in ('success', 'failed', 'cancelled')
                     or r.tasks_finished + delta.finished < r.tasks_total then r.status
                when r.tasks_failed + delta.failed > 0 then 'failed'
                when r.tasks_cancelled + delta.cancelled > 0 then 'cancelled'
                else 'success' end,
            finished_at = case
                when r.status in ('success', 'failed', 'cancelled')
                     or r.tasks_finished + delta.finished < r.tasks_total then r.finished_at
                else now() end
        from delta
        where r.id = delta.run_id
        returning r.id, r.status
    )
    select jsonb_agg(jsonb_build_object('id', d.id, 'status', d.status) order by d.id) filter (where d.rn <= 100),
           count(*)
    into v_finished, v_count
    from (
        select c.id, c.status, row_number() over (order by c.id) as rn
        from counted c
        where c.status in ('success', 'failed', 'cancelled') and c.id <> all(coalesce(v_terminal, '{}'))
    ) d;

    if v_count > 0 then
        perform _notify('runs', jsonb_build_object('runs', v_finished, 'more', v_count > 100)::text);
    end if;
end
$$;
