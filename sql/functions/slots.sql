-- Priorities, concurrency limits and fairness (schema version 5; docs/semantics.md,
-- "Priorities and limits"). A slot pool counts tasks in flight against a limit: one per
-- concurrency key, one per workflow with a max tasks in flight. A slot group is the
-- pools a task counts against plus, for a fair workflow, its run; the ready tasks of a
-- group are one ordered list in task_queue_group_idx. The claim takes the slots
-- (claim_tasks, _pick_grouped) and every way a task leaves flight gives them back: the
-- state machine (_apply_task_changes) in its own update, _queue_sync (which every other
-- path that moves a task calls) through _release_slots. A task holds its group's slots
-- while bit 1 of its slot_hold is set (schema version 11): the locked update that
-- clears it gives them back, so every way a task leaves flight gives its slots back
-- exactly once (bit 2 says the row held them before that update, so its RETURNING
-- tells what it changed: 1 took them, 2 gave them back, 3 kept them).

-- _check_priority refuses a priority outside -1000 … 1000 (OK422 naming "priority").
create function {{.schema}}_api._check_priority(p_priority integer)
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
as $$
begin
    if p_priority is null or p_priority < -1000 or p_priority > 1000 then
        raise exception using errcode = 'OK422', column = 'priority',
            message = format('priority must be between -1000 and 1000, got %s', coalesce(p_priority::text, 'NULL'));
    end if;
end
$$;

-- _slot_hold is a task's slot_hold after a change to p_status (docs above): bit 1 while
-- it is in flight in a slot group, bit 2 for bit 1 of p_old. The claim's update and the
-- state machine's write it beside the status; the other paths that move a task leave
-- it to _queue_sync (_release_slots). A group without a pool (a fair run's alone) sets
-- the bit too and counts nothing (_adjust_pools skips it). Plain SQL, so the planner
-- inlines it.
create function {{.schema}}_api._slot_hold(p_old smallint, p_status text, p_slot_group bigint)
returns smallint
language sql
immutable
as $$
    select ((case when p_slot_group <> 0 and p_status in ('dispatched', 'running') then 1 else 0 end)
            | ((p_old & 1) << 1))::smallint
$$;

-- _adjust_pools adds to the in-flight count of every pool of the slot groups in
-- p_taken one per element and takes one per element of p_given (a task's group,
-- repeated per task; groups without a pool count nothing). The one place that writes
-- slot_pools' counters: the claim (claim_tasks), the state machine, _take_slots and
-- _release_slots. Pools are updated in id order (the sorted per-pool counts drive a
-- nested loop over the primary key) and once per call, so callers that hold no pool
-- yet (reporters giving slots back and taking them) cannot deadlock with each other
-- within a call; a claimer holds its pools already (_pick_grouped), SKIP LOCKED. A
-- pool whose count does not change is not written.
create function {{.schema}}_api._adjust_pools(p_taken bigint[], p_given bigint[])
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
set enable_seqscan = off
set enable_hashjoin = off
set enable_mergejoin = off
as $$
begin
    if coalesce(cardinality(p_taken), 0) = 0 and coalesce(cardinality(p_given), 0) = 0 then
        return;
    end if;
    -- Counted per group first (a few groups for 1,000 tasks), so slot_groups is probed
    -- once per group, not once per task.
    with per_group as (
        select u.g, sum(u.sign)::integer as n
        from (select t.g, 1 as sign from unnest(p_taken) as t(g)
              union all
              select v.g, -1 from unnest(p_given) as v(g)) u
        where u.g <> 0
        group by u.g
    ), per as (
        select p.pool, sum(pg.n)::integer as n
        from per_group pg join slot_groups g on g.id = pg.g
        cross join lateral (values (g.workflow_pool), (g.key_pool)) as p(pool)
        where p.pool <> 0
        group by p.pool
        having sum(pg.n) <> 0
        order by p.pool
    )
    update slot_pools sp set in_flight = sp.in_flight + per.n from per where sp.id = per.pool;
end
$$;

-- _release_slots gives back the slots held by those of p_task_ids that hold any and are
-- no longer in flight (call it, holding their row locks, with tasks that just left
-- flight by an update that left slot_hold alone: _queue_sync).
create function {{.schema}}_api._release_slots(p_task_ids bigint[])
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
set enable_seqscan = off
as $$
declare
    v_groups bigint[];
begin
    if coalesce(cardinality(p_task_ids), 0) = 0 then
        return;
    end if;
    -- Clearing the bit is what decides: the update holds the row, and a second one
    -- finds it clear, so no two paths give one slot back twice.
    with gone as (
        update tasks t set slot_hold = 2
        where t.id = any(p_task_ids) and t.slot_hold & 1 = 1 and t.status not in ('dispatched', 'running')
        returning t.slot_group
    )
    select array_agg(gone.slot_group) into v_groups from gone;
    perform _adjust_pools(null, v_groups);
end
$$;

-- _take_slots makes those of p_task_ids that are in flight in a slot group and hold no
-- slot hold theirs (an import's tasks in flight; the state machine takes them in its
-- update).
create function {{.schema}}_api._take_slots(p_task_ids bigint[])
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
set enable_seqscan = off
set enable_hashjoin = off
set enable_mergejoin = off
as $$
declare
    v_groups bigint[];
begin
    if coalesce(cardinality(p_task_ids), 0) = 0 then
        return;
    end if;
    with added as (
        update tasks t set slot_hold = 1
        where t.id = any(p_task_ids) and t.slot_hold & 1 = 0 and t.slot_group <> 0
          and t.status in ('dispatched', 'running')
        returning t.slot_group
    )
    select array_agg(added.slot_group) into v_groups from added;
    perform _adjust_pools(v_groups, null);
end
$$;

-- _place_run_tasks puts the run's tasks that have no slot group yet into theirs: the
-- workflow's pool (max tasks in flight), their key's pool, and for a fair workflow the
-- run. A key without a pool raises OK422 (set its slots first). Tasks of a workflow
-- without limits or fairness and without keys stay in group 0 (one probe per task of
-- the run to find no key).
create function {{.schema}}_api._place_run_tasks(p_run_id bigint)
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
    v_fair boolean;
    v_wpool bigint;
    v_bad text;
begin
    select w.fair, coalesce((select p.id from slot_pools p where p.workflow_id = w.id), 0)
    into v_fair, v_wpool
    from runs r join workflows w on w.id = r.workflow_id
    where r.id = p_run_id;
    if v_wpool = 0 and not v_fair
       and not exists (select 1 from tasks t where t.run_id = p_run_id and t.concurrency_key <> '') then
        return;
    end if;
    select t.concurrency_key into v_bad
    from tasks t
    where t.run_id = p_run_id and t.concurrency_key <> ''
      and not exists (select 1 from slot_pools p where p.key = t.concurrency_key)
    limit 1;
    if v_bad is not null then
        raise exception using errcode = 'OK422', column = 'concurrency_key',
            message = format('unknown concurrency key %L: set its slots first', v_bad);
    end if;
    insert into slot_groups (workflow_pool, key_pool, fair_run)
    select distinct v_wpool, coalesce(p.id, 0), case when v_fair then p_run_id else 0 end
    from tasks t
    left join slot_pools p on p.key = t.concurrency_key and t.concurrency_key <> ''
    where t.run_id = p_run_id and t.slot_group = 0
      and (v_wpool <> 0 or v_fair or p.id is not null)
    on conflict (workflow_pool, key_pool, fair_run) do nothing;
    with placed as (
        update tasks t
        set slot_group = g.id
        from slot_groups g
        where t.run_id = p_run_id and t.slot_group = 0
          and g.workflow_pool = v_wpool
          and g.key_pool = coalesce((select p.id from slot_pools p where p.key = t.concurrency_key and t.concurrency_key <> ''), 0)
          and g.fair_run = case when v_fair then p_run_id else 0 end
        returning t.id, t.slot_group
    )
    update task_queue q set slot_group = placed.slot_group from placed where q.task_id = placed.id;
end
$$;

-- set_concurrency_key creates or changes a concurrency key's slot count (1 … 1,000,000;
-- null is refused: a key is a pool with slots, as in the Go contract, and a key meant
-- only to group tasks takes 1,000,000). Lowering it below the tasks in flight takes no
-- task back: the key's tasks wait until enough have left flight.
create function {{.schema}}_api.set_concurrency_key(p_key text, p_slots integer)
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
as $$
begin
    if p_key is null or btrim(p_key) = '' or p_key <> btrim(p_key) or length(p_key) > 200 then
        raise exception using errcode = 'OK422', column = 'concurrency_key',
            message = format('concurrency key must be 1 to 200 characters without surrounding spaces, got %s',
                             coalesce(quote_literal(p_key), 'NULL'));
    end if;
    if p_slots is null or p_slots < 1 or p_slots > 1000000 then
        raise exception using errcode = 'OK422', column = 'slots',
            message = format('slots must be between 1 and 1000000, got %s', coalesce(p_slots::text, 'NULL'));
    end if;
    insert into slot_pools as p (key, slots) values (p_key, p_slots)
    on conflict (key) do update set slots = excluded.slots;
end
$$;

-- concurrency_slots lists every concurrency key with its slot count and the tasks
-- holding one of its slots now, by key.
create function {{.schema}}_api.concurrency_slots()
returns table (key text, slots integer, in_flight integer)
language sql
stable
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
as $$
    select p.key, p.slots, p.in_flight from slot_pools p where p.key is not null order by p.key
$$;

-- set_workflow_limits sets a workflow's priority (-1000 … 1000), max active runs and max
-- tasks in flight (null: no limit; else 1 … 1,000,000) and fairness. OK404 for an
-- unknown workflow. A new priority reaches the workflow's tasks that are not ready yet
-- (waiting on dependencies or paused) and have no priority of their own; ready and
-- in-flight tasks keep theirs. A changed max tasks in flight applies at once when the
-- workflow had a limit before; the first one, and fairness, apply to runs started after.
create function {{.schema}}_api.set_workflow_limits(p_workflow_id bigint, p_priority integer,
                                                     p_max_active_runs integer, p_max_tasks_in_flight integer,
                                                     p_fair boolean)
returns void
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
as $$
declare
    v_old smallint;
begin
    perform _check_priority(p_priority);
    if p_max_active_runs is not null and (p_max_active_runs < 1 or p_max_active_runs > 1000000) then
        raise exception using errcode = 'OK422', column = 'max_active_runs',
            message = format('max_active_runs must be between 1 and 1000000, got %s', p_max_active_runs);
    end if;
    if p_max_tasks_in_flight is not null and (p_max_tasks_in_flight < 1 or p_max_tasks_in_flight > 1000000) then
        raise exception using errcode = 'OK422', column = 'max_tasks_in_flight',
            message = format('max_tasks_in_flight must be between 1 and 1000000, got %s', p_max_tasks_in_flight);
    end if;
    if p_fair is null then
        raise exception using errcode = 'OK422', column = 'fair', message = 'fair must not be NULL';
    end if;
    select w.priority into v_old from workflows w where w.id = p_workflow_id for no key update;
    if not found then
        raise exception using errcode = 'OK404', message = format('workflow %s not found', p_workflow_id);
    end if;
    update workflows w
    set priority = p_priority, max_active_runs = p_max_active_runs, fair = p_fair, updated_at = now()
    where w.id = p_workflow_id;
    if p_max_tasks_in_flight is not null
       or exists (select 1 from slot_pools p where p.workflow_id = p_workflow_id) then
        insert into slot_pools as p (workflow_id, slots) values (p_workflow_id, p_max_tasks_in_flight)
        on conflict (workflow_id) do update set slots = excluded.slots;
    end if;
    if v_old <> p_priority then
        -- tasks in id order, as every path that locks several tasks
        with locked as (
            select t.id from runs r join tasks t on t.run_id = r.id
            where r.workflow_id = p_workflow_id and r.status in ('running', 'paused')
              and t.status in ('pending', 'paused') and t.priority_override is null
              and not (t.status = 'pending' and _deps_met(t.id, t.run_id, t.depends_on, t.unmet_deps))
            order by t.id
            for no key update of t
        )
        update tasks t set priority = p_priority from locked where t.id = locked.id;
    end if;
end
$$;

-- workflow_limits returns what set_workflow_limits set. OK404 for an unknown workflow.
create function {{.schema}}_api.workflow_limits(p_workflow_id bigint,
                                                 out priority integer, out max_active_runs integer,
                                                 out max_tasks_in_flight integer, out fair boolean)
language plpgsql
stable
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
as $$
#variable_conflict use_column
begin
    select w.priority, w.max_active_runs,
           (select p.slots from slot_pools p where p.workflow_id = w.id), w.fair
    into priority, max_active_runs, max_tasks_in_flight, fair
    from workflows w where w.id = p_workflow_id;
    if not found then
        raise exception using errcode = 'OK404', message = format('workflow %s not found', p_workflow_id);
    end if;
end
$$;

-- _pick_grouped chooses and locks (FOR NO KEY UPDATE SKIP LOCKED) the queue rows a
-- claim of up to p_limit takes when some ready task has a slot group, and returns
-- them with their groups. It locks the pools of the groups that have ready tasks, SKIP
-- LOCKED: a pool another claimer (or a reporter giving slots back) holds counts as
-- full for this claim, so racing claimers take a pool's slots one after the other and
-- a claimer never waits (reporters may take pools in any order across the rounds of a
-- batch: a waiting claimer could deadlock with them). Candidates: the head of the
-- ungrouped list, and of each group whose pools all have room at most the smallest
-- room (a full pool's tasks are never read); then each pool keeps as many as it has
-- room for, in claim order. The order is priority, then turn (a fair run's n-th task,
-- or the n-th of every other task, has turn n: round-robin between fair runs and the
-- rest), then the newer run on a tie of turns, then id. With no group free, only the
-- ungrouped head is read. Retry times are due against p_now, the claim's time.
create function {{.schema}}_api._pick_grouped(p_limit integer, p_executor_types text[], p_now timestamptz)
returns table (task_id bigint, slot_group bigint)
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
set plan_cache_mode = force_generic_plan
-- every read is an ordered index scan with a LIMIT or a key probe
set enable_seqscan = off
as $$
#variable_conflict use_column
declare
    v_groups bigint[];
    v_pools bigint[];
    v_free integer[];
    v_gids bigint[];
    v_room integer[];
    v_simple boolean;
    v_lists integer;
    v_m integer;
    v_ids bigint[];
    v_prio smallint[];
    v_list bigint[];
    v_sg bigint[];
    v_cut_prio smallint;
    v_cut_id bigint;
    v_pick bigint[];
begin
    -- The groups with ready tasks: a loose index scan, one probe per group.
    v_groups := array(
        with recursive g(id) as (
            (select q.slot_group from task_queue q where q.slot_group <> 0 order by q.slot_group limit 1)
            union all
            -- "<> 0" again: only then can the planner use the partial index
            select (select q.slot_group from task_queue q
                    where q.slot_group > g.id and q.slot_group <> 0 order by q.slot_group limit 1)
            from g where g.id is not null
        )
        select g.id from g where g.id is not null);
    select array_agg(x.id), array_agg(x.free) into v_pools, v_free
    from (
        select p.id, case when p.slots is null then p_limit else p.slots - p.in_flight end as free
        from slot_pools p
        where p.id = any(array(select g.workflow_pool from slot_groups g where g.id = any(v_groups)
                               union
                               select g.key_pool from slot_groups g where g.id = any(v_groups)))
        order by p.id
        for no key update skip locked
    ) x;
    -- Each group's room: the smallest free count of its pools (a pool this claim could
    -- not lock has none); fair runs have no pool, so always room.
    select array_agg(g.id), array_agg(least(p_limit,
                 case when g.workflow_pool = 0 then p_limit else coalesce(wp.free, 0) end,
                 case when g.key_pool = 0 then p_limit else coalesce(kp.free, 0) end))
    into v_gids, v_room
    from slot_groups g
    left join unnest(v_pools, v_free) as wp(id, free) on wp.id = g.workflow_pool
    left join unnest(v_pools, v_free) as kp(id, free) on kp.id = g.key_pool
    where g.id = any(v_groups);
    -- No fair run and no pool shared by two groups (keys alone, or a workflow limit
    -- without keys): each group's room already bounds every pool, so the claim is the
    -- first p_limit candidates by priority and id, without the window ranks (a third
    -- of the claim's time with four keys).
    -- (No group with room at all: only the ungrouped list is read, which is simple.)
    select not exists (select 1 from unnest(v_room) r where r > 0)
       or not exists (select 1 from slot_groups g where g.id = any(v_groups) and g.fair_run <> 0)
       and not exists (select 1 from slot_groups g where g.id = any(v_groups)
                       group by g.workflow_pool having g.workflow_pool <> 0 and count(*) > 1)
       and not exists (select 1 from slot_groups g where g.id = any(v_groups)
                       group by g.key_pool having g.key_pool <> 0 and count(*) > 1)
    into v_simple;
    if v_simple then
        -- A k-way merge of the lists (the ungrouped one and each group with room), read
        -- and locked as they are read: first about a share of p_limit from each list
        -- (the claim takes p_limit of the merged order, where reading each list's
        -- p_limit read 4,000 entries to take 1,000 with four keys), then, if the lists
        -- cut short end too early in the merged order, four times as much, until every
        -- list is read as far as the claim could take from it. Rows locked and not taken
        -- stay in the queue (other claimers skip them until this one commits).
        v_lists := coalesce(cardinality(array(select 1 from unnest(v_room) r where r > 0)), 0)
                   + case when exists (select 1 from task_queue q where q.slot_group = 0) then 1 else 0 end;
        v_m := least(p_limit, ceil(p_limit * 1.15 / greatest(v_lists, 1))::integer + 8);
        loop
            select array_agg(c.task_id), array_agg(c.priority), array_agg(c.list), array_agg(c.slot_group)
            into v_ids, v_prio, v_list, v_sg
            from (
                select 0::bigint as list, u.task_id, u.priority, u.slot_group
                from (select q.task_id, q.priority, q.slot_group from task_queue q
                      where q.slot_group = 0
                        and (q.ready_at is null or q.ready_at <= p_now)
                        and (p_executor_types is null or q.executor_type = any(p_executor_types))
                      order by q.priority desc, q.task_id
                      limit v_m
                      for no key update skip locked) u
                union all
                select grp.id, c.task_id, c.priority, c.slot_group
                from unnest(v_gids, v_room) as grp(id, room)
                cross join lateral (
                    select q.task_id, q.priority, q.slot_group from task_queue q
                    -- "<> 0" lets the planner use the partial group index (else: a
                    -- sequential scan and a sort of the queue per group, 26 ms at 20,000)
                    where q.slot_group = grp.id and q.slot_group <> 0
                      and (q.ready_at is null or q.ready_at <= p_now)
                      and (p_executor_types is null or q.executor_type = any(p_executor_types))
                    order by q.priority desc, q.task_id
                    limit least(grp.room, v_m)
                    for no key update skip locked) c
                where grp.room > 0
            ) c;
            -- The merged order is known up to the earliest last row of the lists this
            -- round cut short (read v_m rows where the claim could take more from them).
            v_cut_prio := null;
            v_cut_id := null;
            if v_m < p_limit then
                with lp as (
                    select u.list, u.prio, count(*) as n, max(u.id) as last_id
                    from unnest(v_ids, v_prio, v_list) as u(id, prio, list)
                    group by u.list, u.prio
                ), l as (
                    select lp.list, sum(lp.n) as n,
                           (array_agg(lp.prio order by lp.prio))[1] as prio,
                           (array_agg(lp.last_id order by lp.prio))[1] as id
                    from lp group by lp.list
                )
                select l.prio, l.id into v_cut_prio, v_cut_id
                from l left join unnest(v_gids, v_room) as r(id, room) on r.id = l.list
                where l.n = v_m and coalesce(r.room, p_limit) > v_m
                order by l.prio desc, l.id
                limit 1;
            end if;
            exit when v_cut_id is null
                   or (select count(*) from unnest(v_ids, v_prio) as u(id, prio)
                       where u.prio > v_cut_prio or (u.prio = v_cut_prio and u.id <= v_cut_id)) >= p_limit;
            v_m := least(p_limit, v_m * 4);
        end loop;
        return query
        select u.id, u.sg from unnest(v_ids, v_prio, v_sg) as u(id, prio, sg)
        where v_cut_id is null or u.prio > v_cut_prio or (u.prio = v_cut_prio and u.id <= v_cut_id)
        order by u.prio desc, u.id
        limit p_limit;
        return;
    end if;
    v_pick := array(
        with pool(id, free) as (
            select * from unnest(v_pools, v_free)
        ), grp as (
            select g.id, g.workflow_pool, g.key_pool, g.fair_run, r.room
            from unnest(v_gids, v_room) as r(id, room)
            join slot_groups g on g.id = r.id
        ), cand as (
            select u.task_id, u.priority, 0::bigint as wp, 0::bigint as kp, 0::bigint as fr
            from (select q.task_id, q.priority from task_queue q
                  where q.slot_group = 0
                    and (q.ready_at is null or q.ready_at <= p_now)
                    and (p_executor_types is null or q.executor_type = any(p_executor_types))
                  order by q.priority desc, q.task_id
                  limit p_limit) u
            union all
            select c.task_id, c.priority, grp.workflow_pool, grp.key_pool, grp.fair_run
            from grp
            cross join lateral (
                select q.task_id, q.priority from task_queue q
                where q.slot_group = grp.id and q.slot_group <> 0
                  and (q.ready_at is null or q.ready_at <= p_now)
                  and (p_executor_types is null or q.executor_type = any(p_executor_types))
                order by q.priority desc, q.task_id
                limit grp.room) c
            where grp.room > 0
        ), turned as (
            select c.*, row_number() over (partition by c.fr order by c.priority desc, c.task_id) as turn
            from cand c
        ), ranked as (
            select t.*,
                   row_number() over (partition by t.wp order by t.priority desc, t.turn, t.fr desc, t.task_id) as wn,
                   row_number() over (partition by t.kp order by t.priority desc, t.turn, t.fr desc, t.task_id) as kn
            from turned t
        )
        select r.task_id
        from ranked r
        left join pool wp on wp.id = r.wp
        left join pool kp on kp.id = r.kp
        where (r.wp = 0 or r.wn <= wp.free) and (r.kp = 0 or r.kn <= kp.free)
        order by r.priority desc, r.turn, r.fr desc, r.task_id
        limit p_limit);
    -- Window ranks cannot lock as they read: the chosen rows are locked here, and one
    -- another claimer holds is left out (the claim takes fewer).
    return query select q.task_id, q.slot_group from task_queue q where q.task_id = any(v_pick)
                 for no key update skip locked;
end
$$;
