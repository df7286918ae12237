package pgstore_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/pgstore"
	orksql "github.com/orkstate/orkstate/sql"
)

func TestValidateSchemaName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"ork", "_ork", "ork2", "a", "action", "name", "t1_ork_api", strings.Repeat("a", 40)} {
		if err := pgstore.ValidateSchemaName(name); err != nil {
			t.Errorf("ValidateSchemaName(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range []string{
		"", "AudU", "Ork", "1ork", "ork-x", "ork x", `ork"`, "ork;drop", "é",
		"select", "user", "order", "table", "left", "int", "system_user",
		"pg_ork", "pg_catalog", "public", "information_schema", strings.Repeat("a", 41),
	} {
		wantValidation(t, pgstore.ValidateSchemaName(name), "schema")
	}
}

// Every keyword of the server that is not unreserved is refused, and unreserved
// ones are accepted: the Go list is a superset of the server's.
func TestSchemaKeywordsCoverServer(t *testing.T) {
	t.Parallel()
	pool := testdb.Pool(t)
	rows, err := pool.Query(context.Background(), `select word, catcode from pg_get_keywords()`)
	noErr(t, err)
	defer rows.Close()
	n := 0
	for rows.Next() {
		var word, cat string
		noErr(t, rows.Scan(&word, &cat))
		err := pgstore.ValidateSchemaName(word)
		switch {
		case cat != "U" && err == nil:
			t.Errorf("keyword %q (catcode %s) is accepted as a schema name", word, cat)
		case cat == "U" && err != nil && !strings.HasPrefix(word, "pg_"):
			t.Errorf("unreserved keyword %q refused: %v", word, err)
		}
		n++
	}
	noErr(t, rows.Err())
	if n < 400 {
		t.Fatalf("pg_get_keywords returned %d words", n)
	}
}

// A bad name is refused before anything is created: no schema, no version table.
func TestMigrateRefusesBadSchemaNames(t *testing.T) {
	t.Parallel()
	pool := testdb.Pool(t)
	ctx := context.Background()
	for _, name := range []string{"select", "user", "order", "pg_ork", "AudU", "public"} {
		err := pgstore.Migrate(ctx, pool, name)
		wantValidation(t, err, "schema")
		var leftovers int
		noErr(t, pool.QueryRow(ctx, `select (select count(*) from pg_class where relname = lower($1) || '_schema_version')
			+ (select count(*) from pg_namespace where nspname = lower($1) || '_api')`, name).Scan(&leftovers))
		if leftovers != 0 {
			t.Fatalf("Migrate(%q) left %d objects behind", name, leftovers)
		}
	}
	s := testdb.SchemaName(t)
	wantValidation(t, pgstore.MigrateTo(ctx, pool, s, 99), "version")
	wantValidation(t, pgstore.MigrateTo(ctx, pool, s, -2), "version")
	var n int
	noErr(t, pool.QueryRow(ctx, `select count(*) from pg_class where relname = $1`, s+"_schema_version").Scan(&n))
	if n != 0 {
		t.Fatalf("a refused version created the version table")
	}
}

// apiRoutines maps each routine of the install's package to its oid.
func apiRoutines(t *testing.T, pool *pgxpool.Pool, schema string) map[string]uint32 {
	t.Helper()
	rows, err := pool.Query(context.Background(), `select p.oid::regprocedure::text, p.oid::int8
		from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = $1`, schema+"_api")
	noErr(t, err)
	defer rows.Close()
	out := map[string]uint32{}
	for rows.Next() {
		var sig string
		var oid int64
		noErr(t, rows.Scan(&sig, &oid))
		out[sig] = uint32(oid)
	}
	noErr(t, rows.Err())
	return out
}

// olderPackage is the function package as an older release might have shipped it:
// one routine more (old_only), set_notify_enabled with another signature, and
// without fire_schedules.
func olderPackage(t *testing.T) fs.FS {
	t.Helper()
	cur := orksql.Functions()
	out := fstest.MapFS{}
	noErr(t, fs.WalkDir(cur, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(cur, p)
		out[p] = &fstest.MapFile{Data: b}
		return err
	}))
	edit := func(name, old, new string) {
		s := string(out[name].Data)
		if !strings.Contains(s, old) {
			t.Fatalf("%s has no %q", name, old)
		}
		out[name] = &fstest.MapFile{Data: []byte(strings.Replace(s, old, new, 1))}
	}
	out["old_only.sql"] = &fstest.MapFile{Data: []byte(
		"create function {{.schema}}_api.old_only() returns integer language sql as $$ select 1 $$;\n")}
	edit("install.sql", "{{ template \"schedules.sql\" . }}\n", "{{ template \"old_only.sql\" . }}\n")
	edit("notify.sql", "set_notify_enabled(p_enabled boolean)", "set_notify_enabled(p_enabled boolean, p_old integer default 0)")
	return out
}

// An error inside a function file names the statement and the function it is in:
// the package runs as one string, whose position Postgres reports.
func TestInstallErrorNamesThePlace(t *testing.T) {
	t.Parallel()
	b := setupFresh(t)
	for _, c := range []struct{ after, insert, want string }{
		{"begin\n", "    selec 1;\n", `(at "selec 1;" in {api}.cancel_run)`},  // in the body
		{"returns void\n", "strictt\n", `(at "strictt" in {api}.cancel_run)`}, // in the header
	} {
		pkg := olderPackage(t).(fstest.MapFS)
		s := string(pkg["runs.sql"].Data)
		i := strings.Index(s, "create function {{.schema}}_api.cancel_run(")
		if i < 0 || !strings.Contains(s[i:], c.after) {
			t.Fatalf("runs.sql has no cancel_run with %q to break", c.after)
		}
		j := strings.Index(s[i:], c.after) + i + len(c.after)
		pkg["runs.sql"] = &fstest.MapFile{Data: []byte(s[:j] + c.insert + s[j:])}
		err := installPackage(t, b.s.Pool(), b.s.Schema(), pkg)
		want := strings.ReplaceAll(c.want, "{api}", b.s.Schema()+"_api")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("install with %q: %v, want %s", c.insert, err, want)
		}
	}
}

// installPackage installs a function package into an install, as tern code install would.
func installPackage(t *testing.T, pool *pgxpool.Pool, schema string, dir fs.FS) error {
	t.Helper()
	conn, err := pool.Acquire(context.Background())
	noErr(t, err)
	defer conn.Release()
	return pgstore.InstallFunctions(context.Background(), conn.Conn(), schema, dir)
}

// The README's grants (plus a DBA's revoke from PUBLIC) survive a re-install of an
// unchanged package, an upgrade from an older package and a schema rollback and
// upgrade: the role runs a DAG afterwards and keeps EXECUTE on every routine, and
// PUBLIC gets none back, not even on a routine new in the upgrade (fire_schedules).
func TestGrantsSurviveReinstallAndUpgrade(t *testing.T) {
	t.Parallel()
	b := setupFresh(t)
	schema, pool := b.s.Schema(), b.s.Pool()
	role := schema + "_app"
	b.exec(t, "create role "+role)
	t.Cleanup(func() { dropRole(b, role) })

	noErr(t, installPackage(t, pool, schema, olderPackage(t))) // the release before this one
	for _, q := range readmeGrants(t, schema, role) {
		b.exec(t, q)
	}
	b.exec(t, "revoke execute on all routines in schema {api} from public")
	// A second role may call only set_notify_enabled, whose signature the upgrade changes.
	ops := schema + "_ops"
	b.exec(t, "create role "+ops)
	t.Cleanup(func() { dropRole(b, ops) })
	b.exec(t, "grant usage on schema {api} to "+ops)
	b.exec(t, "grant execute on function {api}.set_notify_enabled(boolean, integer) to "+ops)

	noErr(t, pgstore.MigrateTo(b.ctx, pool, schema, 1)) // down, keeping the rows
	noErr(t, pgstore.Migrate(b.ctx, pool, schema))      // and up: the current package replaces the old one
	noErr(t, pgstore.Migrate(b.ctx, pool, schema))      // a deploy that changes nothing

	routines := apiRoutines(t, pool, schema)
	if _, ok := routines[schema+"_api.old_only()"]; ok {
		t.Fatalf("old_only survived the upgrade: the package's own old routines must go")
	}
	if _, ok := routines[schema+"_api.set_notify_enabled(boolean)"]; !ok {
		t.Fatalf("set_notify_enabled(boolean) missing after the upgrade; have %v", routines)
	}
	if n := b.count(t, `select count(*) from pg_proc p where p.pronamespace = $1::regnamespace
		and not has_function_privilege($2, p.oid, 'execute')`, schema+"_api", role); n != 0 {
		t.Fatalf("%s lost EXECUTE on %d routines", role, n)
	}
	if n := b.count(t, `select count(*) from pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
		where p.pronamespace = $1::regnamespace and a.grantee = 0`, schema+"_api"); n != 0 {
		t.Fatalf("PUBLIC got EXECUTE back on %d routines", n)
	}
	// The replaced routine kept its grant by name; a new routine got only what all had.
	for name, want := range map[string]bool{"set_notify_enabled": true, "fire_schedules": false, "claim_tasks": false} {
		var got, found bool
		noErr(t, pool.QueryRow(b.ctx, `select coalesce(bool_and(has_function_privilege($1, p.oid, 'execute')), false), count(*) > 0
			from pg_proc p where p.pronamespace = $2::regnamespace and p.proname = $3`, ops, schema+"_api", name).Scan(&got, &found))
		if !found || got != want {
			t.Errorf("%s may execute %s: %v (found: %v), want %v", ops, name, got, found, want)
		}
	}
	runDAGAs(t, b, role)
}

// Migrate with an unchanged package touches nothing (the routines keep their oids);
// a routine dropped by hand is put back.
func TestReinstallOnlyWhenPackageChanges(t *testing.T) {
	t.Parallel()
	b := setupFresh(t)
	schema, pool := b.s.Schema(), b.s.Pool()
	before := apiRoutines(t, pool, schema)
	noErr(t, pgstore.Migrate(b.ctx, pool, schema))
	if after := apiRoutines(t, pool, schema); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("an unchanged package was re-installed:\nbefore %v\nafter  %v", before, after)
	}

	b.exec(t, "drop function {api}.set_notify_enabled(boolean)")
	noErr(t, pgstore.Migrate(b.ctx, pool, schema))
	if _, ok := apiRoutines(t, pool, schema)[schema+"_api.set_notify_enabled(boolean)"]; !ok {
		t.Fatalf("a routine dropped by hand was not restored by Migrate")
	}
}

// A schema <schema>_api that orkstate did not create is refused and left alone, and
// the failed install removes what it created (schema, version table).
func TestInstallRefusesForeignAPISchema(t *testing.T) {
	t.Parallel()
	pool := testdb.Pool(t)
	ctx := context.Background()
	schema := testdb.SchemaName(t)
	t.Cleanup(func() { testdb.Drop(t, pool, schema) })
	for _, q := range []string{
		"create schema " + schema + "_api",
		"create table " + schema + "_api.precious (v int)",
		"insert into " + schema + "_api.precious values (42)",
	} {
		_, err := pool.Exec(ctx, q)
		noErr(t, err)
	}

	err := pgstore.Migrate(ctx, pool, schema)
	if err == nil || !strings.Contains(err.Error(), "is not the function package") {
		t.Fatalf("Migrate into a foreign %s_api: %v, want a refusal", schema, err)
	}
	var v int
	noErr(t, pool.QueryRow(ctx, "select v from "+schema+"_api.precious").Scan(&v))
	var left int
	noErr(t, pool.QueryRow(ctx, `select (select count(*) from pg_namespace where nspname = $1)
		+ (select count(*) from pg_class where relname = $1 || '_schema_version')`, schema).Scan(&left))
	if v != 42 || left != 0 {
		t.Fatalf("after the refused install: precious = %d, %d objects of the install left", v, left)
	}
	// Removing an install never drops a foreign schema either.
	noErr(t, pgstore.MigrateTo(ctx, pool, schema, 0))
	noErr(t, pool.QueryRow(ctx, "select v from "+schema+"_api.precious").Scan(&v))
}

// A view that uses an API function stops a re-install (and a removal) with an error
// naming it; it is never dropped.
func TestInstallRefusesToDropDependents(t *testing.T) {
	t.Parallel()
	b := setupFresh(t)
	schema, pool := b.s.Schema(), b.s.Pool()
	b.exec(t, "create view {ork}.uses_api as select * from {api}.claim_tasks('view', 1)")
	before := apiRoutines(t, pool, schema)

	err := installPackage(t, pool, schema, olderPackage(t))
	if err == nil || !strings.Contains(err.Error(), "view "+schema+".uses_api depends on function") {
		t.Fatalf("re-install under a dependent view: %v, want an error naming the view", err)
	}
	if after := apiRoutines(t, pool, schema); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("the failed install changed the routines")
	}
	if n := b.count(t, "select count(*) from pg_views where schemaname = $1 and viewname = 'uses_api'", schema); n != 1 {
		t.Fatalf("the view is gone")
	}

	err = pgstore.MigrateTo(b.ctx, pool, schema, 0)
	if err == nil || !strings.Contains(err.Error(), "uses_api") {
		t.Fatalf("removal under a dependent view: %v, want an error naming the view", err)
	}
	b.exec(t, "drop view {ork}.uses_api")
	noErr(t, pgstore.MigrateTo(b.ctx, pool, schema, 0))
}

var shadowDBs atomic.Int64

// Functions and operators planted in public that match the migrations' calls better
// than pg_catalog's never run: not on the way up (with a leased task to carry over
// from version 2 to 3), down to 0, or up again.
func TestMigrationsIgnoreShadowsInPublic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin := testdb.Pool(t)
	db := fmt.Sprintf("orkstate_shadow_%d_%d", os.Getpid(), shadowDBs.Add(1))
	_, err := admin.Exec(ctx, "create database "+db)
	noErr(t, err)
	cfg, err := pgxpool.ParseConfig(testdb.URL())
	noErr(t, err)
	cfg.ConnConfig.Database = db
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	noErr(t, err)
	t.Cleanup(func() {
		pool.Close()
		_, _ = admin.Exec(context.Background(), "drop database if exists "+db+" with (force)")
	})

	// Each shadow counts its call (a sequence is not rolled back) and then fails.
	for _, q := range []string{
		`create sequence public.shadow_calls`,
		`create function public.shadow_ran(what text) returns void language plpgsql as $$
			begin perform nextval('public.shadow_calls'); raise exception 'shadow % ran', what; end $$`,
		`create function public.unnest(a bigint[]) returns setof bigint language plpgsql as $$
			begin perform public.shadow_ran('unnest(bigint[])'); end $$`,
		`create function public.shadow_range_agg(s int8multirange, r int8range) returns int8multirange language plpgsql as $$
			begin perform public.shadow_ran('range_agg(int8range)'); return s; end $$`,
		`create aggregate public.range_agg(int8range) (sfunc = public.shadow_range_agg, stype = int8multirange)`,
		`create function public.shadow_eq(a bigint[], b bigint[]) returns boolean language plpgsql as $$
			begin perform public.shadow_ran('= on bigint[]'); return false; end $$`,
		`create operator public.= (leftarg = bigint[], rightarg = bigint[], function = public.shadow_eq)`,
		`create function public.array_position(a text[], e text) returns integer language plpgsql as $$
			begin perform public.shadow_ran('array_position(text[], text)'); return null; end $$`,
		`create function public.format(f text, a text) returns text language plpgsql as $$
			begin perform public.shadow_ran('format(text, text)'); return null; end $$`,
	} {
		_, err := pool.Exec(ctx, q)
		noErr(t, err)
	}

	schema := "ork"
	noErr(t, pgstore.MigrateTo(ctx, pool, schema, 2))
	// A dispatched task under a lease, for migration 3 to turn into a lease row.
	for _, q := range []string{
		`insert into ork.workflows (name) values ('w')`,
		`insert into ork.runs (workflow_id, status) select id, 'running' from ork.workflows`,
		`insert into ork.tasks (run_id, task_index, task_name, status, lease_expires_at)
			select id, 0, 'a', 'dispatched', now() + interval '1 hour' from ork.runs`,
		`insert into ork.task_queue (task_id, state, lease_expires_at) select id, 'dispatched', lease_expires_at from ork.tasks`,
	} {
		_, err := pool.Exec(ctx, q)
		noErr(t, err)
	}
	noErr(t, pgstore.Migrate(ctx, pool, schema))
	var leases int
	noErr(t, pool.QueryRow(ctx, `select count(*) from ork.task_leases`).Scan(&leases))
	if leases != 1 {
		t.Fatalf("the upgrade to 3 made %d lease rows, want 1", leases)
	}
	noErr(t, pgstore.MigrateTo(ctx, pool, schema, 0))
	noErr(t, pgstore.Migrate(ctx, pool, schema))

	// The package pins its own path too (a tern connection may not be pinned): a
	// replace through one of the pool's connections, with public on their path.
	noErr(t, installPackage(t, pool, schema, olderPackage(t)))
	noErr(t, installPackage(t, pool, schema, orksql.Functions()))

	var called bool
	noErr(t, pool.QueryRow(ctx, `select is_called from public.shadow_calls`).Scan(&called))
	if called {
		t.Fatalf("a shadow planted in public ran during a migration")
	}
	s, err := pgstore.New(pool, &pgstore.Config{Schema: schema})
	noErr(t, err)
	_, err = s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "after"})
	noErr(t, err)
}

// dropRole removes a role a test created, with whatever was granted to it.
func dropRole(b *testBundle, role string) {
	ctx := context.Background()
	_, _ = b.s.Pool().Exec(ctx, "drop owned by "+role)
	_, _ = b.s.Pool().Exec(ctx, "drop role if exists "+role)
}

// runDAGAs runs a two-task DAG through the Store as role, in one transaction.
func runDAGAs(t *testing.T, b *testBundle, role string) {
	t.Helper()
	tx, err := b.s.Pool().Begin(b.ctx)
	noErr(t, err)
	defer func() { _ = tx.Rollback(b.ctx) }()
	_, err = tx.Exec(b.ctx, "set local role "+role)
	noErr(t, err)
	s := b.s.WithTx(tx)
	w, err := s.CreateWorkflow(b.ctx, orkstate.NewWorkflow{Name: "least"})
	noErr(t, err)
	_, err = s.ReplaceWorkflowTasks(b.ctx, w.ID, []orkstate.TaskSpec{{Name: "a"}, {Name: "b", DependsOn: []string{"a"}}})
	noErr(t, err)
	run, err := s.CreateRun(b.ctx, w.ID, "role")
	noErr(t, err)
	_, err = s.StartPendingRuns(b.ctx, 1)
	noErr(t, err)
	for _, name := range []string{"a", "b"} {
		claimed, err := s.ClaimTasks(b.ctx, orkstate.ClaimParams{Claimer: "app", Limit: 10})
		noErr(t, err)
		if len(claimed) != 1 || claimed[0].TaskName != name {
			t.Fatalf("claimed %v, want %s", claimed, name)
		}
		_, err = s.UpdateTaskStatus(b.ctx, orkstate.TaskUpdate{TaskID: claimed[0].ID, Status: orkstate.TaskSuccess, Attempt: claimed[0].Attempt})
		noErr(t, err)
	}
	got, err := s.GetRun(b.ctx, run.ID)
	noErr(t, err)
	if got.Status != orkstate.RunSuccess {
		t.Fatalf("run as %s ended %s", role, got.Status)
	}
	var current string
	noErr(t, tx.QueryRow(b.ctx, "select current_user").Scan(&current))
	if current != role {
		t.Fatalf("ran as %s, not %s", current, role)
	}
}
