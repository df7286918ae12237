-- report_and_claim is a scheduler loop's one round trip: it applies the reports of the
-- tasks the loop finished, exactly as set_task_states does, then claims, exactly as
-- claim_tasks does, in one transaction (one commit instead of two). The claim sees the
-- report's effects: a task the report made ready can be claimed by the same call.
--
-- The first six arguments are set_task_states', the next four claim_tasks'. p_now is
-- the time of the call, as in the other time-dependent functions (NULL: now()).
-- p_task_ids may be empty (the call is then a claim) but not null. Bad input on either
-- side fails the whole call: no report is applied, nothing is claimed (the claim's
-- arguments are checked before the report runs).
--
-- Rows: one per report, then one per claimed task.
--   report rows   ord (the input's position, 1-based), task_id, outcome and status as
--                 set_task_states returns them; the claim columns are null.
--   claimed rows  ord null, outcome 'claimed', status 'dispatched', task_id the task,
--                 and the rest of claim_tasks' row (its id column is task_id here).
-- Report rows come in set_task_states' order (input order within each round of
-- repeated ids), claimed rows in claim order.
--
-- Locks: the report waits for its task rows in id order like set_task_states, and
-- only then does the claim take rows, all SKIP LOCKED (queue rows, task rows, slot
-- pools): a call waits only while it holds no more than a report would, so it adds no
-- lock cycle that set_task_states and claim_tasks called apart could not form.
-- Example: select * from ork_api.report_and_claim(array[1,2], array['success','success'],
--          null, null, null, array[1,1], 'scheduler-1', 100);
create function {{.schema}}_api.report_and_claim(
    p_task_ids bigint[],
    p_statuses text[],
    p_execution_names text[],
    p_errors text[],
    p_outputs jsonb[],
    p_attempts integer[],
    p_claimer text,
    p_limit integer,
    p_executor_types text[] default null,
    p_lease interval default '5 minutes',
    p_now timestamptz default now()
)
returns table (
    ord integer, task_id bigint, outcome text, status text,
    run_id bigint, task_index integer, task_name text, executor_type text, depends_on text[],
    execution_name text, params jsonb, output jsonb, error text, attempt integer,
    max_retries integer, timeout_seconds integer, lease_expires_at timestamptz, created_at timestamptz,
    dispatched_at timestamptz, workflow_id bigint, workflow_name text, job_name text, project text, region text,
    upstream_outputs jsonb, priority integer, priority_override integer, concurrency_key text
)
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
begin
    perform _check_claim(p_claimer, p_limit, p_lease);
    return query
    select s.ord, s.task_id, s.outcome, s.status,
           null::bigint, null::integer, null::text, null::text, null::text[], null::text, null::jsonb,
           null::jsonb, null::text, null::integer, null::integer, null::integer, null::timestamptz,
           null::timestamptz, null::timestamptz, null::bigint, null::text, null::text, null::text,
           null::text, null::jsonb, null::integer, null::integer, null::text
    from set_task_states(p_task_ids, p_statuses, p_execution_names, p_errors, p_outputs, p_attempts, p_now) s;
    return query
    select null::integer, c.id, 'claimed'::text, 'dispatched'::text,
           c.run_id, c.task_index, c.task_name, c.executor_type, c.depends_on, c.execution_name, c.params,
           c.output, c.error, c.attempt, c.max_retries, c.timeout_seconds, c.lease_expires_at, c.created_at,
           c.dispatched_at, c.workflow_id, c.workflow_name, c.job_name, c.project, c.region, c.upstream_outputs,
           c.priority, c.priority_override, c.concurrency_key
    from claim_tasks(p_claimer, p_limit, p_executor_types, p_lease, p_now) c;
end
$$;
