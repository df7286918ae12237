-- fire_schedules fires due schedules: for each (workflow, fire time, next fire time) it
-- advances the workflow's schedule and creates one pending run triggered by 'schedule'
-- capturing the current snapshot — but only when the workflow's next_scheduled_at still
-- equals that fire time. That compare-and-set makes firing exactly-once however many
-- schedulers race. Next fire times come from the cron expression, computed by the caller
-- (cron lives in Go); a next time at or before its fire time is refused (OK422), as it
-- would fire again at once. Returns the runs created.
create function {{.schema}}_api.fire_schedules(
    p_workflow_ids bigint[],
    p_fire_times timestamptz[],
    p_next_times timestamptz[]
)
returns setof {{.schema}}.runs
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
begin
    if coalesce(cardinality(p_workflow_ids), 0) <> coalesce(cardinality(p_fire_times), 0)
       or coalesce(cardinality(p_workflow_ids), 0) <> coalesce(cardinality(p_next_times), 0) then
        raise exception using errcode = 'OK422', column = 'workflow_ids',
            message = 'workflow_ids, fire_times and next_times must have the same length';
    end if;
    if exists (select 1 from unnest(p_workflow_ids, p_fire_times, p_next_times) as f(id, fire_time, next_time)
               where f.id is null or f.fire_time is null or f.next_time is null or f.next_time <= f.fire_time) then
        raise exception using errcode = 'OK422', column = 'next_times',
            message = 'every workflow id, fire time and next time must be given, and each next time must be after its fire time';
    end if;
    return query
    with fired as (
        update workflows w
        set last_scheduled_at = f.fire_time, next_scheduled_at = f.next_time, updated_at = now()
        from unnest(p_workflow_ids, p_fire_times, p_next_times) as f(id, fire_time, next_time)
        where w.id = f.id and w.schedule_enabled and w.next_scheduled_at = f.fire_time
        returning w.id, w.current_snapshot_id
    )
    insert into runs (workflow_id, snapshot_id, triggered_by)
    select fired.id, fired.current_snapshot_id, 'schedule' from fired order by fired.id
    returning *;
end
$$;
