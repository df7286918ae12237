package pgstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"text/template"

	"github.com/Masterminds/sprig/v3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/tern/v2/migrate"

	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/pgstore"
)

// renderTernConf renders ../tern.conf as tern does (a text/template with sprig's
// functions, run before tern connects) and returns its keys as "section.key".
func renderTernConf(t *testing.T) (map[string]string, error) {
	t.Helper()
	src, err := os.ReadFile("../tern.conf")
	noErr(t, err)
	tmpl, err := template.New("conf").Funcs(sprig.TxtFuncMap()).Parse(string(src))
	noErr(t, err)
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, map[string]any{}); err != nil {
		return nil, err
	}
	out := map[string]string{}
	section := ""
	for line := range strings.SplitSeq(buf.String(), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("tern.conf renders a line that is not key = value: %q", line)
			}
			out[section+"."+strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out, nil
}

// tern.conf refuses what ValidateSchemaName refuses, before tern connects, and
// pins search_path whatever form DATABASE_URL has.
func TestTernConf(t *testing.T) {
	bad := append([]string{"AudU", "Ork", "1ork", "ork-x", "pg_ork", "public", "information_schema", strings.Repeat("a", 41)},
		pgstore.SchemaKeywords...)
	for _, name := range bad {
		if pgstore.ValidateSchemaName(name) == nil {
			t.Fatalf("ValidateSchemaName accepts %q", name)
		}
		t.Setenv("ORK_SCHEMA", name)
		if _, err := renderTernConf(t); err == nil || !strings.Contains(err.Error(), "not a valid orkstate schema name") {
			t.Errorf("tern.conf with ORK_SCHEMA=%q: %v, want a refusal", name, err)
		}
	}
	for _, name := range []string{"ork", "_x", "action", "t1_ork", strings.Repeat("a", 40)} {
		t.Setenv("ORK_SCHEMA", name)
		conf, err := renderTernConf(t)
		noErr(t, err)
		if conf["data.schema"] != name || conf["database.version_table"] != pgstore.VersionTable(name) {
			t.Errorf("ORK_SCHEMA=%s renders %v", name, conf)
		}
	}
	t.Setenv("ORK_SCHEMA", "")
	for _, url := range []string{
		"", "postgres://u@h:5432/db", "postgres://u@h/db?sslmode=disable", "host=h user=u dbname=db",
	} {
		t.Setenv("DATABASE_URL", url)
		conf, err := renderTernConf(t)
		noErr(t, err)
		if conf["data.schema"] != "ork" {
			t.Errorf("the default schema renders as %q", conf["data.schema"])
		}
		cfg, err := pgx.ParseConfig(conf["database.conn_string"])
		noErr(t, err)
		if got := cfg.RuntimeParams["options"]; got != "-c search_path=pg_catalog,pg_temp" {
			t.Errorf("DATABASE_URL=%q: conn_string %q sets options %q", url, conf["database.conn_string"], got)
		}
	}
}

// The tern path — tern.conf's connection, tern migrate, tern code install — makes
// the same install as pgstore.Migrate: Migrate afterwards finds the same package
// installed and changes nothing.
func TestTernPathMatchesMigrate(t *testing.T) {
	ctx := context.Background()
	pool := testdb.Pool(t)
	schema := testdb.SchemaName(t)
	t.Cleanup(func() { testdb.Drop(t, pool, schema) })
	t.Setenv("ORK_SCHEMA", schema)
	t.Setenv("DATABASE_URL", testdb.URL())
	conf, err := renderTernConf(t)
	noErr(t, err)

	cfg, err := pgx.ParseConfig(conf["database.conn_string"])
	noErr(t, err)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	noErr(t, err)
	defer func() { _ = conn.Close(ctx) }()
	data := map[string]any{"schema": conf["data.schema"]}
	m, err := migrate.NewMigrator(ctx, conn, conf["database.version_table"])
	noErr(t, err)
	m.Data = data
	noErr(t, m.LoadMigrations(os.DirFS("../sql/schema")))
	noErr(t, m.Migrate(ctx))
	code, err := migrate.LoadCodePackage(os.DirFS("../sql/functions"))
	noErr(t, err)
	noErr(t, migrate.InstallCodePackage(ctx, conn, data, code))
	var path string
	noErr(t, conn.QueryRow(ctx, "show search_path").Scan(&path))
	if path != pgstore.DDLSearchPath && path != "pg_catalog,pg_temp" {
		t.Errorf("tern's connection has search_path %q", path)
	}

	before := apiRoutines(t, pool, schema)
	noErr(t, pgstore.Migrate(ctx, pool, schema))
	if after := apiRoutines(t, pool, schema); len(before) == 0 || !equalRoutines(before, after) {
		t.Fatalf("Migrate re-installed what tern installed:\nbefore %v\nafter  %v", before, after)
	}
	noErr(t, migrate.InstallCodePackage(ctx, conn, data, code))
	if after := apiRoutines(t, pool, schema); !equalRoutines(before, after) {
		t.Fatalf("tern code install of the same package re-installed it")
	}
}

func equalRoutines(a, b map[string]uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A tern config that does not check the name still cannot install the package
// into a name pgstore refuses: install.sql raises invalid_schema_name first.
func TestInstallSQLRefusesBadSchemaName(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.Pool(t)
	code, err := migrate.LoadCodePackage(os.DirFS("../sql/functions"))
	noErr(t, err)
	for _, name := range []string{"AudU", "select", "pg_ork", "public"} {
		conn, err := pool.Acquire(ctx)
		noErr(t, err)
		err = migrate.InstallCodePackage(ctx, conn.Conn(), map[string]any{"schema": name}, code)
		conn.Release()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "3F000" {
			t.Fatalf("install.sql with schema %q: %v, want SQLSTATE 3F000", name, err)
		}
		var n int
		noErr(t, pool.QueryRow(ctx, `select count(*) from pg_namespace where nspname in ($1::text, lower($1::text))`, name+"_api").Scan(&n))
		if n != 0 {
			t.Fatalf("install.sql with schema %q created its _api schema", name)
		}
	}
}
