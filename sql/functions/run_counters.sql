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
begin
    if coalesce(cardinality(p_run_ids), 0) = 0 then
        return;
    end if;
    perform 1 from runs r where r.id = any(p_run_ids) order by r.id for no key update;

    with delta as (
        select d.run_id,
               count(*) as finished,
               count(*) filter (where d.status = 'failed') as failed,
               count(*) filter (where d.status = 'cancelled') as cancelled
        from unnest(p_run_ids, p_statuses) as d(run_id, status)
        group by d.run_id
    ), before as (
        -- the rows are locked above, so this statement's snapshot holds their current state
        select r.id, r.status in ('success', 'failed', 'cancelled') as was_terminal
        from runs r where r.id = any(p_run_ids)
    ), counted as (
        update runs r
        set tasks_finished = r.tasks_finished + delta.finished,
            tasks_failed = r.tasks_failed + delta.failed,
            tasks_cancelled = r.tasks_cancelled + delta.cancelled,
            status = case
                when b.was_terminal or r.tasks_finished + delta.finished < r.tasks_total then r.status
                when r.tasks_failed + delta.failed > 0 then 'failed'
                when r.tasks_cancelled + delta.cancelled > 0 then 'cancelled'
                else 'success' end,
            finished_at = case
                when b.was_terminal or r.tasks_finished + delta.finished < r.tasks_total then r.finished_at
                else now() end
        from delta, before b
        where r.id = delta.run_id and b.id = delta.run_id
        returning r.id, r.status, b.was_terminal
    )
    select jsonb_agg(jsonb_build_object('id', d.id, 'status', d.status) order by d.id) filter (where d.rn <= 100),
           count(*)
    into v_finished, v_count
    from (
        select c.id, c.status, row_number() over (order by c.id) as rn
        from counted c
        where not c.was_terminal and c.status in ('success', 'failed', 'cancelled')
    ) d;

    if v_count > 0 then
        perform _notify('runs', jsonb_build_object('runs', v_finished, 'more', v_count > 100)::text);
    end if;
end
$$;
