package triggerer

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/pgstore"
)

// TestShadowedPublicFunctions plants, where another role could (a schema on the
// caller's search_path ahead of pg_catalog's overloads), functions that River's
// unqualified calls would resolve to because their argument types match exactly,
// each raising an exception. MigrateRiver and a triggerer round (create deferred
// jobs in the caller's transaction, poll, report running, finish, cancel) run on
// connections with that search_path and must never call them.
//
// The test database is shared by parallel tests, so the shadows go into a schema
// of this test's own that its connections list where public usually is
// ("$user", public): function resolution treats both the same.
func TestShadowedPublicFunctions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	plain, schema := testdb.Schema(t)
	shadow := schema + "_shadow"
	must(t, execSQL(ctx, plain, "create schema "+shadow), "create shadow schema")
	t.Cleanup(func() { _ = execSQL(context.Background(), plain, "drop schema "+shadow+" cascade") })
	for _, typ := range []string{"bigint", "integer", "smallint", "text", "jsonb", "bytea", "timestamptz", "boolean"} {
		must(t, execSQL(ctx, plain, fmt.Sprintf(`create function %s.unnest(%s[]) returns setof %s language plpgsql as $$
			begin raise exception 'shadow %s.unnest(%s[]) ran'; end $$`, shadow, typ, typ, shadow, typ)), "plant unnest("+typ+"[])")
	}
	must(t, execSQL(ctx, plain, fmt.Sprintf(`create function %s.array_length(bigint[], integer) returns integer language plpgsql as $$
		begin raise exception 'shadow array_length ran'; end $$`, shadow)), "plant array_length")

	cfg := plain.Config()
	// Both ways a caller's pool may set its path: a startup parameter and a hook.
	cfg.ConnConfig.RuntimeParams["search_path"] = shadow + ", public"
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "set search_path = "+shadow+", public")
		return err
	}
	cfg.MaxConns = 8
	shadowed, err := pgxpool.NewWithConfig(ctx, cfg)
	must(t, err, "shadowed pool")
	t.Cleanup(shadowed.Close)
	// The shadows fire for an unpinned connection.
	if _, err := shadowed.Exec(ctx, "select unnest(array[1::bigint])"); err == nil || !strings.Contains(err.Error(), "shadow") {
		t.Fatalf("shadow unnest on an unpinned connection: err = %v, want it to raise", err)
	}

	if err := MigrateRiver(ctx, shadowed, schema); err != nil {
		t.Fatalf("MigrateRiver with shadows on the caller's path: %v", err)
	}
	store, err := pgstore.New(plain, &pgstore.Config{Schema: schema})
	must(t, err, "pgstore.New")
	b := &testBundle{pool: plain, schema: schema, store: store}
	fake := newFake(runningThen(map[string]int{"one": 2}, orkstate.PollCompleted, ""))
	tcfg := b.config(fake)
	tcfg.Pool = shadowed
	tr := b.start(t, tcfg)
	fx := b.newRun(t)

	// CreateDeferredJobsTx in a transaction of the caller's (shadowed) pool; the
	// caller's search_path is back afterwards.
	tx, err := shadowed.Begin(ctx)
	must(t, err, "begin")
	defer func() { _ = tx.Rollback(ctx) }()
	djs, err := tr.CreateDeferredJobsTx(ctx, tx, fx.a.ID, []orkstate.NewDeferredJob{
		{ServiceType: fakeServiceType, JobID: "one", JobData: json.RawMessage(`{}`)},
		{ServiceType: fakeServiceType, JobID: "two", JobData: json.RawMessage(`{}`)},
	})
	must(t, err, "CreateDeferredJobsTx")
	var path string
	must(t, tx.QueryRow(ctx, "show search_path").Scan(&path), "show search_path")
	if path != shadow+", public" {
		t.Errorf("caller's search_path after CreateDeferredJobsTx = %q, want %q", path, shadow+", public")
	}
	must(t, tx.Commit(ctx), "commit")

	waitRiverFinal(t, tr, djs[0].ID, djs[1].ID)
	if a := b.task(t, fx.a.ID); a.Status != orkstate.TaskSuccess {
		t.Fatalf("task a: %s, want success", a.Status)
	}
	if _, err := tr.CancelTaskJobs(ctx, fx.a.ID); err != nil {
		t.Fatalf("CancelTaskJobs: %v", err)
	}
}

func execSQL(ctx context.Context, pool *pgxpool.Pool, sql string) error {
	_, err := pool.Exec(ctx, sql)
	return err
}

// TestPoolPlansGenerically: the Triggerer's own connections run with
// plan_cache_mode force_generic_plan, whatever the caller's pool sets (startup
// parameter or AfterConnect), and the caller's pool keeps its own setting.
func TestPoolPlansGenerically(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	cfg := b.pool.Config()
	cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "set plan_cache_mode = force_custom_plan")
		return err
	}
	callers, err := pgxpool.NewWithConfig(ctx, cfg)
	must(t, err, "caller's pool")
	t.Cleanup(callers.Close)
	tcfg := b.config()
	tcfg.Pool = callers
	tr, err := New(tcfg)
	must(t, err, "New")
	defer tr.Close()
	var mode string
	must(t, tr.pool.QueryRow(ctx, "show plan_cache_mode").Scan(&mode), "show plan_cache_mode")
	if mode != "force_generic_plan" {
		t.Errorf("plan_cache_mode on the triggerer's connections = %q, want force_generic_plan", mode)
	}
	must(t, callers.QueryRow(ctx, "show plan_cache_mode").Scan(&mode), "show plan_cache_mode")
	if mode != "force_custom_plan" {
		t.Errorf("plan_cache_mode on the caller's connections = %q, want force_custom_plan", mode)
	}
}
