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

-- _check_claim refuses a claim without a claimer, with a bad limit or a lease that is
-- not positive (OK422 naming the argument).
create function {{.schema}}_api._check_claim(p_claimer text, p_limit integer, p_lease interval)
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
as $$
begin
    if p_claimer is null or p_claimer = '' then
        raise exception using errcode = 'OK422', column = 'claimer', message = 'claimer must not be empty';
    end if;
    perform _check_limit(p_limit);
    if p_lease is null or p_lease <= interval '0' then
        raise exception using errcode = 'OK422', column = 'lease', message = 'lease must be positive';
    end if;
end
$$;
