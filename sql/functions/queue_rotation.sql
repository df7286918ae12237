-- rotate_task_queue empties task_queue of its dead rows while a long transaction
-- holds the xmin horizon back (a report, a forgotten session): the PgQ answer, a
-- TRUNCATE, in one table instead of PgQ's ring of tables, so nothing that reads or
-- writes the queue changes.
--
-- Every claim deletes the queue rows it takes. While any snapshot older than those
-- deletes is open, neither VACUUM nor page pruning may remove the rows, and the
-- claim's ordered index scan, which starts at the front of task_queue_order_idx where
-- the claimed entries are, steps over every one of them: on 2 cores claim latency grew
-- 0.12 ms per 1,000 dead rows (p50 0.5 → 11.7 ms after 240 s at 400 tasks/s, issue 14).
-- TRUNCATE does not wait for snapshots: it gives the table and its indexes new, empty
-- files. The ready rows are carried over: read under an ACCESS EXCLUSIVE lock,
-- truncated, inserted again in the same transaction.
--
-- It does nothing (rotated false) while the queue has fewer than p_min_dead dead rows
-- (the statistics' count, pg_stat_get_dead_tuples: it lags by up to a few seconds),
-- and nothing when the lock is not granted within 100 ms: claims and reports hold the
-- table for milliseconds, so it normally is; a pg_dump, or any transaction that read
-- the queue, holds it until it ends, and the dead rows stay until then. The lock
-- is held for the copy of the ready rows (about 1 ms per 1,000 on 2 cores): claims and
-- reports wait that long.
--
-- Call it every few seconds beside the lease sweep (cheap when there is nothing to
-- do: one statistics read). It needs the TRUNCATE privilege on task_queue.
--
-- TRUNCATE is not MVCC-safe: a transaction whose snapshot predates the rotation then
-- sees the queue empty (it holds no lock on it, or there would be no rotation). The
-- functions read the queue only in READ COMMITTED statements that start after their
-- table locks (so after the rotation); a caller that claims inside its own REPEATABLE
-- READ transaction started before a rotation finds nothing to claim and tries again.
create function {{.schema}}_api.rotate_task_queue(p_min_dead bigint default 10000)
returns table (rotated boolean, dead_rows bigint, carried_rows integer)
language plpgsql
set search_path = {{.schema}}, {{.schema}}_api, pg_temp
set jit = off
-- Claims and reports hold the table for milliseconds; a wait longer than this means a
-- transaction that keeps it (a pg_dump): give up and leave the claims running. Those
-- that queue behind the rotation's request wait at most this long too.
set lock_timeout = '100ms'
as $$
declare
    v_dead bigint := pg_stat_get_dead_tuples('{{.schema}}.task_queue'::regclass);
    v_rows task_queue[];
begin
    if p_min_dead is null or p_min_dead < 0 then
        raise exception using errcode = 'invalid_parameter_value',
            message = format('orkstate: p_min_dead must be 0 or more, got %s', coalesce(p_min_dead::text, 'null'));
    end if;
    if v_dead < p_min_dead then
        return query select false, v_dead, 0;
        return;
    end if;
    begin
        lock table task_queue in access exclusive mode;
    exception when lock_not_available then  -- lock_timeout
        return query select false, v_dead, 0;
        return;
    end;
    v_rows := array(select q from task_queue q);
    truncate task_queue;
    insert into task_queue select * from unnest(v_rows);
    return query select true, v_dead, cardinality(v_rows);
end
$$;
