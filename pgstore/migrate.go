package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"

	"github.com/orkstate/orkstate"
	orksql "github.com/orkstate/orkstate/sql"
)

// DDLSearchPath is the search_path of every connection that migrates or installs:
// pg_catalog first and nothing a user can create objects in, so a function or an
// operator planted in public (a public.unnest(bigint[]) is a better match than
// pg_catalog's unnest(anyarray)) never runs inside a migration. Migrate sets it
// before each migration, because tern runs RESET ALL after every one; a startup
// parameter would survive that too, but PgBouncer refuses unknown ones.
const DDLSearchPath = "pg_catalog, pg_temp"

// ternLockID is the advisory lock tern takes around each step; Migrate holds it for
// the whole of its work (session advisory locks nest), so a concurrent Migrate or
// tern command waits instead of seeing a half-done install or its cleanup.
const ternLockID = int64(9628173550095224)

// VersionTable is where tern records the schema version of an install. It lives in
// public because tern creates it before migration 1 creates the install schema.
func VersionTable(schema string) string { return "public." + schema + "_schema_version" }

// Migrate brings the install in schema to the newest version: the schema
// migrations (sql/schema), then the function package (sql/functions). It is
// MigrateTo(ctx, pool, schema, -1).
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	return MigrateTo(ctx, pool, schema, -1)
}

// MigrateTo moves the install's schema to version (-1: newest).
//
// The schema name must pass ValidateSchemaName and the version must be -1 … newest,
// else a *orkstate.ValidationError is returned before anything is created.
// Everything runs on one connection of its own (built from the pool's config, with
// its BeforeConnect hook), with search_path set to DDLSearchPath before every step,
// under tern's advisory lock, so processes that start at once are safe. Each
// migration is a transaction. The connection must go straight to PostgreSQL: one
// through a pooler such as PgBouncer (the server's backend pid differs from the one
// the connection was given) is refused with an error saying so, before anything is
// locked or changed.
//
// At the newest version the function package is installed into <schema>_api, in one
// transaction, so a running scheduler never sees half of it: nothing happens when
// the installed package is the same; otherwise the package's routines are replaced
// and keep their privileges, and an object outside the package that depends on one
// of them makes the install fail with an error naming it (see sql/functions/install.sql).
// A schema <schema>_api that orkstate did not create is refused. The package is
// written for the newest schema, so after a rollback to an intermediate version the
// installed package stays as it is; install the package of the release that shipped
// that version (tern code install from its checkout) to match it.
//
// Version 0 removes the install: both schemas and tern's version table. A call that
// starts from version 0 (or from no install) and fails removes what it created, so a
// failed install leaves nothing behind.
func MigrateTo(ctx context.Context, pool *pgxpool.Pool, schema string, version int32) (err error) {
	if err := ValidateSchemaName(schema); err != nil {
		return err
	}
	if pool == nil {
		return orkstate.Invalid("pool", nil, "must not be nil")
	}
	paths, err := migrate.FindMigrations(orksql.Schema())
	if err != nil {
		return fmt.Errorf("pgstore: find migrations: %w", err)
	}
	newest := int32(len(paths))
	if version < -1 || version > newest {
		return orkstate.Invalid("version", version, fmt.Sprintf("must be -1 (newest) or 0 … %d", newest))
	}
	if version == -1 {
		version = newest
	}

	conn, err := connectForDDL(ctx, pool)
	if err != nil {
		return fmt.Errorf("pgstore: migrate %s: %w", schema, err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if err := refusePooler(ctx, conn); err != nil {
		return fmt.Errorf("pgstore: migrate %s: %w", schema, err)
	}
	if _, err := conn.Exec(ctx, "select pg_catalog.pg_advisory_lock($1)", ternLockID); err != nil {
		return fmt.Errorf("pgstore: migrate %s: lock: %w", schema, err)
	}
	// Closing the connection releases the lock too; this only keeps the order plain.
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "select pg_catalog.pg_advisory_unlock($1)", ternLockID)
	}()

	from, err := installedVersion(ctx, conn, schema)
	if err != nil {
		return fmt.Errorf("pgstore: migrate %s: %w", schema, err)
	}
	err = migrateLocked(ctx, conn, schema, version, newest)
	if err == nil && version == 0 {
		err = dropVersionTable(ctx, conn, schema)
	}
	if err != nil && from == 0 && !conn.IsClosed() {
		// Nothing was installed before: take away what this call created. Only on
		// the connection that still holds the lock, so no other migration is undone.
		bg := context.WithoutCancel(ctx)
		if cleanupErr := migrateLocked(bg, conn, schema, 0, newest); cleanupErr != nil {
			return errors.Join(err, fmt.Errorf("pgstore: remove the failed install %s: %w", schema, cleanupErr))
		}
		if cleanupErr := dropVersionTable(bg, conn, schema); cleanupErr != nil {
			return errors.Join(err, cleanupErr)
		}
	}
	return err
}

// connectForDDL opens a connection like the pool's: its session settings
// (search_path) and its advisory lock end with it, not in the pool.
func connectForDDL(ctx context.Context, pool *pgxpool.Pool) (*pgx.Conn, error) {
	pcfg := pool.Config()
	cfg := pcfg.ConnConfig.Copy()
	if pcfg.BeforeConnect != nil {
		if err := pcfg.BeforeConnect(ctx, cfg); err != nil {
			return nil, err
		}
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// refusePooler fails when conn reaches PostgreSQL through a pooler that speaks the
// protocol, such as PgBouncer: the server's pg_backend_pid() is then not the backend
// pid the connection was given at startup, which the pooler made up. Migrate needs a
// session of its own. Behind transaction pooling its session advisory lock (tern's,
// database-wide) can stay held on a pooled server connection after Migrate returns,
// so that every later migration of the database waits until the pooler closes that
// connection, and its session search_path (DDLSearchPath) is left to the pooler's
// other clients. A pooler in session mode would be safe, but it cannot be told from
// one in transaction mode, so both are refused: migrate straight on Postgres.
func refusePooler(ctx context.Context, conn *pgx.Conn) error {
	var pid int64
	if err := conn.QueryRow(ctx, "select pg_catalog.pg_backend_pid()::int8").Scan(&pid); err != nil {
		return err
	}
	if given := int64(conn.PgConn().PID()); pid != given {
		return fmt.Errorf("the connection goes through a connection pooler (PgBouncer?): the server's backend "+
			"pid is %d, the one the connection was given %d; Migrate holds a session advisory lock and sets "+
			"search_path for its session, which transaction pooling would leave behind on a server connection: "+
			"migrate on a connection straight to PostgreSQL", pid, given)
	}
	return nil
}

// pinSearchPath sets the session's search_path to DDLSearchPath.
func pinSearchPath(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, "select pg_catalog.set_config('search_path', $1, false)", DDLSearchPath)
	return err
}

// installedVersion is tern's version of the install, 0 when it has no version table.
func installedVersion(ctx context.Context, conn *pgx.Conn, schema string) (int32, error) {
	var exists bool
	if err := conn.QueryRow(ctx, "select pg_catalog.to_regclass($1) is not null", VersionTable(schema)).Scan(&exists); err != nil {
		return 0, err
	}
	if !exists {
		return 0, nil
	}
	var v int32
	err := conn.QueryRow(ctx, "select version from "+VersionTable(schema)).Scan(&v)
	return v, err
}

func dropVersionTable(ctx context.Context, conn *pgx.Conn, schema string) error {
	if _, err := conn.Exec(ctx, "drop table if exists "+VersionTable(schema)); err != nil {
		return fmt.Errorf("pgstore: drop %s: %w", VersionTable(schema), err)
	}
	return nil
}

// migrateLocked runs tern's migrations to version and, at the newest version,
// installs the function package.
func migrateLocked(ctx context.Context, conn *pgx.Conn, schema string, version, newest int32) error {
	m, err := migrate.NewMigrator(ctx, conn, VersionTable(schema))
	if err != nil {
		return fmt.Errorf("pgstore: migrate %s: %w", schema, err)
	}
	m.Data["schema"] = schema
	if err := m.LoadMigrations(orksql.Schema()); err != nil {
		return fmt.Errorf("pgstore: load migrations: %w", err)
	}
	cur, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: migrate %s: %w", schema, err)
	}
	// One step at a time, search_path pinned before each (tern resets it after each).
	for cur != version {
		next := cur + 1
		if version < cur {
			next = cur - 1
		}
		if err := pinSearchPath(ctx, conn); err != nil {
			return fmt.Errorf("pgstore: migrate %s: %w", schema, err)
		}
		if err := m.MigrateTo(ctx, next); err != nil {
			return fmt.Errorf("pgstore: migrate %s to version %d: %w", schema, version, err)
		}
		cur = next
	}
	if version != newest {
		return nil
	}
	if err := pinSearchPath(ctx, conn); err != nil {
		return fmt.Errorf("pgstore: migrate %s: %w", schema, err)
	}
	return installFunctions(ctx, conn, schema, orksql.Functions())
}

// installFunctions renders and runs the tern code package in dir (install.sql
// decides whether anything changes).
func installFunctions(ctx context.Context, conn *pgx.Conn, schema string, dir fs.FS) error {
	code, err := migrate.LoadCodePackage(dir)
	if err != nil {
		return fmt.Errorf("pgstore: load functions: %w", err)
	}
	if err := migrate.InstallCodePackage(ctx, conn, map[string]any{"schema": schema}, code); err != nil {
		return fmt.Errorf("pgstore: install functions into %s_api: %w%s", schema, err, packageErrorPlace(err))
	}
	return nil
}

// packageErrorPlace says where in the package an error happened. install.sql runs
// the package text as one string, so Postgres reports a position inside that string
// (InternalPosition, in characters) — except for a syntax error in a function body,
// whose position it maps into the text the client sent (the whole install.sql). The
// candidate whose text starts with the error's "at or near" token is the right one.
func packageErrorPlace(err error) string {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.InternalPosition <= 0 {
		return ""
	}
	candidates := []string{pgErr.InternalQuery}
	_, token, isSyntax := strings.Cut(pgErr.Message, `at or near "`)
	token = strings.TrimSuffix(token, `"`)
	var ternErr migrate.MigrationPgError
	if isSyntax && errors.As(err, &ternErr) {
		candidates = append([]string{ternErr.Sql}, candidates...)
	}
	for _, q := range candidates {
		text := []rune(q)
		pos := int(pgErr.InternalPosition) - 1
		if pos >= len(text) || !strings.HasPrefix(string(text[pos:]), token) {
			continue
		}
		before, after := string(text[:pos]), string(text[pos:])
		line := before[strings.LastIndexByte(before, '\n')+1:]
		if end := strings.IndexByte(after, '\n'); end >= 0 {
			after = after[:end]
		}
		place := fmt.Sprintf(" (at %q", strings.TrimSpace(line+after))
		if i := strings.LastIndex(before, "create function "); i >= 0 {
			name, _, _ := strings.Cut(before[i+len("create function "):], "(")
			place += " in " + name
		}
		return place + ")"
	}
	return ""
}

// Migrate installs or upgrades this Store's schema (see the package function).
func (s *Store) Migrate(ctx context.Context) error { return Migrate(ctx, s.pool, s.schema) }
