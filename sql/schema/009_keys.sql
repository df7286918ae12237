-- orkstate schema, version 9: every concurrency key has a slot count.
--
-- set_concurrency_key(key, null) used to create a key that only counted (no limit),
-- which the Go contract (SetConcurrencyKey takes 1 … MaxSlots) could neither create
-- nor copy (storecopy and state files stopped at it). A concurrency key is a pool with
-- slots, as Airflow's pools are; set_concurrency_key now refuses null. A key made that
-- way before gets the largest slot count (1,000,000), which limits nothing it could
-- hold before in practice; a workflow's pool keeps null slots for "no max tasks in
-- flight" (it still counts, so a limit set later starts from the truth).
update {{.schema}}.slot_pools set slots = 1000000 where key is not null and slots is null;
alter table {{.schema}}.slot_pools
    add constraint slot_pools_key_slots_check check (key is null or slots is not null);

---- create above / drop below ----

alter table {{.schema}}.slot_pools drop constraint slot_pools_key_slots_check;
