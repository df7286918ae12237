-- Input checks shared by the API functions. The bounds are orkstate's (bounds.go in the
-- root package: MaxClaimLimit, MaxNameLength, MaxLease, MaxTaskCount, …); keep the two in
-- step. Every check raises OK422 naming the argument, and runs before anything changes.

-- _check_limit refuses a batch limit outside 1 … 10,000 (OK422 naming "limit").
create function {{.schema}}_api._check_limit(p_limit integer)
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
as $$
begin
    if p_limit is null or p_limit < 1 or p_limit > 10000 then
        raise exception using errcode = 'OK422', column = 'limit',
            message = format('limit must be between 1 and 10000, got %s', coalesce(p_limit::text, 'NULL'));
    end if;
end
$$;

-- _check_name refuses a name longer than MaxNameLength (512 characters) and, when
-- p_required, a blank one. Names are indexed: PostgreSQL refuses an index row over
-- ~2,700 bytes with an error that names no argument.
create function {{.schema}}_api._check_name(p_field text, p_name text, p_required boolean)
returns void
language plpgsql
immutable
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
as $$
begin
    if p_required and (p_name is null or btrim(p_name) = '') then
        raise exception using errcode = 'OK422', column = p_field, message = format('%s must not be empty', p_field);
    end if;
    if char_length(p_name) > 512 then
        raise exception using errcode = 'OK422', column = p_field,
            message = format('%s has %s characters, at most 512 allowed', p_field, char_length(p_name));
    end if;
end
$$;

-- _check_claim refuses a claim without a claimer (blank counts as none), with a bad
-- limit, or a lease that is not positive or longer than MaxLease (24 hours).
create function {{.schema}}_api._check_claim(p_claimer text, p_limit integer, p_lease interval)
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
as $$
begin
    perform _check_name('claimer', p_claimer, true);
    perform _check_limit(p_limit);
    if p_lease is null or p_lease <= interval '0' then
        raise exception using errcode = 'OK422', column = 'lease', message = 'lease must be positive';
    end if;
    if p_lease > interval '24 hours' then
        raise exception using errcode = 'OK422', column = 'lease',
            message = format('lease must be at most 24 hours, got %s', p_lease);
    end if;
end
$$;

-- _check_poll_after refuses a negative next_poll_after or one over MaxPollInterval (24 hours).
create function {{.schema}}_api._check_poll_after(p_next_poll_after interval[])
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
as $$
begin
    if p_next_poll_after is not null
       and exists (select 1 from unnest(p_next_poll_after) a where a < interval '0' or a > interval '24 hours') then
        raise exception using errcode = 'OK422', column = 'next_poll_after',
            message = 'next_poll_after must be between 0 and 24 hours';
    end if;
end
$$;

-- _lower_statuses lower-cases status arguments (input may use any case, as in the
-- original: 'RUNNING' is running). Going through the array's text form keeps its
-- bounds, so callers that check them see the input's.
create function {{.schema}}_api._lower_statuses(p_statuses text[])
returns text[]
language sql
immutable
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
as $$
    select lower(p_statuses::text)::text[]
$$;

-- _check_task_specs checks create_tasks' JSON before anything is read or written: an
-- array of at most MaxTaskCount (100,000) objects whose fields have the right JSON types
-- and bounds — task_name (or name) a string of 1 … 512 characters, task_index an integer
-- 0 … 2^31-1, executor_type a string of at most 512, depends_on an array of such names,
-- max_retries 0 … 1,000, timeout_seconds 0 … 2,592,000 (30 days). The error names the
-- spec by position and the field.
create function {{.schema}}_api._check_task_specs(p_specs jsonb)
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
as $$
declare
    v_bad record;
begin
    if p_specs is null or jsonb_typeof(p_specs) <> 'array' then
        raise exception using errcode = 'OK422', column = 'tasks', message = 'task specs must be a JSON array';
    end if;
    if jsonb_array_length(p_specs) > 100000 then
        raise exception using errcode = 'OK422', column = 'tasks',
            message = format('%s task specs, at most 100000 allowed', jsonb_array_length(p_specs));
    end if;
    -- One pass of cheap tests finds the first bad spec; a good input, the usual case,
    -- costs this pass only (19 ms per 5,000 specs against 170 ms for create_tasks,
    -- measured in psql on a loaded machine). Then the reason is worked out for that
    -- one spec.
    select e.spec, e.pos into v_bad
    from jsonb_array_elements(p_specs) with ordinality as e(spec, pos)
    where jsonb_typeof(e.spec) <> 'object'
       or jsonb_typeof(coalesce(e.spec->'task_name', e.spec->'name')) is distinct from 'string'
       or char_length(coalesce(e.spec->>'task_name', e.spec->>'name')) not between 1 and 512
       or jsonb_typeof(coalesce(e.spec->'executor_type', 'null')) not in ('string', 'null')
       or char_length(e.spec->>'executor_type') > 512
       -- numbers compared as jsonb (a number between two numbers), not cast: a text
       -- round trip per field cost more than the rest of the check
       or coalesce(e.spec->'task_index', '0') not between '0'::jsonb and '2147483647'::jsonb
          and e.spec->'task_index' <> 'null'
       or coalesce(e.spec->'max_retries', '0') not between '0'::jsonb and '1000'::jsonb
          and e.spec->'max_retries' <> 'null'
       or coalesce(e.spec->'timeout_seconds', '0') not between '0'::jsonb and '2592000'::jsonb
          and e.spec->'timeout_seconds' <> 'null'
       or jsonb_typeof(coalesce(e.spec->'depends_on', 'null')) not in ('array', 'null')
       -- jsonpath for the types; a like_regex for the length cost 4 µs per spec
       or e.spec @? '$.depends_on[*] ? (@.type() != "string" || @ == "")'
       or (jsonb_typeof(e.spec->'depends_on') = 'array'
           and exists (select 1 from jsonb_array_elements_text(e.spec->'depends_on') d where char_length(d) > 512))
    order by e.pos
    limit 1;
    if not found then
        return;
    end if;
    raise exception using errcode = 'OK422', column = 'tasks',
        message = format('task spec %s: %s', v_bad.pos - 1, case
            when jsonb_typeof(v_bad.spec) <> 'object' then 'must be a JSON object'
            when jsonb_typeof(coalesce(v_bad.spec->'task_name', v_bad.spec->'name')) is distinct from 'string'
                 or char_length(coalesce(v_bad.spec->>'task_name', v_bad.spec->>'name')) not between 1 and 512
                then 'task_name must be a string of 1 to 512 characters'
            when jsonb_typeof(coalesce(v_bad.spec->'executor_type', 'null')) not in ('string', 'null')
                 or char_length(v_bad.spec->>'executor_type') > 512
                then 'executor_type must be a string of at most 512 characters'
            when jsonb_typeof(coalesce(v_bad.spec->'depends_on', 'null')) not in ('array', 'null')
                 or jsonb_typeof(v_bad.spec->'depends_on') = 'array'
                then 'depends_on must be an array of task names of 1 to 512 characters'
            when jsonb_typeof(coalesce(v_bad.spec->'task_index', 'null')) not in ('number', 'null')
                 or (v_bad.spec->>'task_index')::numeric not between 0 and 2147483647
                 or (v_bad.spec->>'task_index')::numeric % 1 <> 0
                then 'task_index must be an integer from 0 to 2147483647'
            when jsonb_typeof(coalesce(v_bad.spec->'max_retries', 'null')) not in ('number', 'null')
                 or (v_bad.spec->>'max_retries')::numeric not between 0 and 1000
                then 'max_retries must be an integer from 0 to 1000'
            else 'timeout_seconds must be an integer from 0 to 2592000' end);
end
$$;
