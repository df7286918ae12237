-- _notify sends one notification on <schema>_<channel> unless the install turned them off.
-- Callers send at most one per channel per statement; Postgres also folds identical
-- notifications of one transaction. Never needed for correctness: listeners fall back to polling.
create function {{.schema}}_api._notify(p_channel text, p_payload text default '')
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
begin
    if (select s.notify_enabled from settings s) then
        perform pg_notify('{{.schema}}_' || p_channel, p_payload);
    end if;
end
$$;

-- _notify_run_finished announces one run's end on <schema>_runs, in the payload form
-- _count_finished uses for many.
create function {{.schema}}_api._notify_run_finished(p_run_id bigint, p_status text)
returns void
language sql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
    select _notify('runs', jsonb_build_object('runs', jsonb_build_array(
        jsonb_build_object('id', p_run_id, 'status', p_status)), 'more', false)::text)
$$;

-- notify_deferred_jobs announces that deferred work was created or became due.
create function {{.schema}}_api.notify_deferred_jobs()
returns void
language sql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$ select _notify('deferred_jobs') $$;

-- set_notify_enabled turns this install's notifications on or off.
create function {{.schema}}_api.set_notify_enabled(p_enabled boolean)
returns void
language sql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$ update settings set notify_enabled = p_enabled $$;
