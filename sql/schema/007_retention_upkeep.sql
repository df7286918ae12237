-- orkstate schema, version 7: what retention needs beyond migration 004.
--
-- A fair workflow's run gets slot groups of its own (slot_groups.fair_run = the run;
-- _place_run_tasks, sql/functions/slots.sql), which nothing removed: purge_runs now
-- deletes a purged run's groups, and finds them through this index (the unique key
-- has fair_run last). Groups are written once per run started, so the index costs
-- the hot paths nothing.
create index if not exists slot_groups_fair_run_idx on {{.schema}}.slot_groups (fair_run) where fair_run <> 0;

---- create above / drop below ----

drop index {{.schema}}.slot_groups_fair_run_idx;
