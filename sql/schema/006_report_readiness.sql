-- orkstate schema, version 6: derived readiness and room for the run counters (issue 14).
--
-- From this version's function package on, a task with exactly one dependency keeps
-- unmet_deps = 0 and is ready when that dependency has succeeded (readiness.sql,
-- _deps_met): a success queues such a dependent without writing its row. Rows written
-- by an older package keep their count and count down as before, so nothing is
-- rewritten going up. Going down, the older packages and migrations read readiness
-- from unmet_deps alone, so the down part gives those rows their count back.
--
-- Every report that finishes tasks rewrites their runs' counters (run_counters.sql): a
-- batch of 1,000 successes over 100 runs writes 100 run versions. runs has six indexes,
-- and on a full page (fillfactor 100) a new version leaves the page: a non-HOT update
-- writes an entry into all six. Measured per 1,000 successes of chain links over 100
-- runs (pg_waldump of the reports' transactions): 99 of the 100 run updates were
-- non-HOT, about 47 B of WAL per transition. A counter update changes no indexed column,
-- so with room on its page it is HOT. Like tasks (version 2), runs now leaves half of
-- each new page free; existing pages keep their rows as they are.

alter table {{.schema}}.runs set (fillfactor = 50);

---- create above / drop below ----

alter table {{.schema}}.runs reset (fillfactor);
update {{.schema}}.tasks t set unmet_deps = 1
where t.status in ('pending', 'paused') and t.unmet_deps = 0 and cardinality(t.depends_on) = 1
  and not exists (select 1 from {{.schema}}.tasks u
                  where u.run_id = t.run_id and u.task_name = t.depends_on[1] and u.status = 'success');
