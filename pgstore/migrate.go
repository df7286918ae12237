package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"

	orksql "github.com/orkstate/orkstate/sql"
)

// VersionTable is where tern records the schema version of an install. It lives in
// public because tern creates it before migration 1 creates the install schema.
func VersionTable(schema string) string { return "public." + schema + "_schema_version" }

// Migrate brings the install in schema to the newest version: the schema
// migrations (sql/schema), then the function package (sql/functions), each in a
// transaction under tern's advisory lock, so processes that start at once are safe
// and a running scheduler never sees half the functions.
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	return MigrateTo(ctx, pool, schema, -1)
}

// MigrateTo moves the install's schema to version (-1: newest). Version 0 removes
// every object of the install; only tern's version table, at 0, remains.
// The function package is written for the newest schema, so it is installed only
// when the result is the newest version; a rollback to an intermediate version
// needs the function package of the release that shipped it (tern code install
// from that checkout).
func MigrateTo(ctx context.Context, pool *pgxpool.Pool, schema string, version int32) error {
	if err := ValidateSchemaName(schema); err != nil {
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: migrate %s: %w", schema, err)
	}
	defer conn.Release()

	m, err := migrate.NewMigrator(ctx, conn.Conn(), VersionTable(schema))
	if err != nil {
		return fmt.Errorf("pgstore: migrate %s: %w", schema, err)
	}
	m.Data["schema"] = schema
	if err := m.LoadMigrations(orksql.Schema()); err != nil {
		return fmt.Errorf("pgstore: load migrations: %w", err)
	}
	newest := int32(len(m.Migrations))
	if version < 0 {
		version = newest
	}
	if err := m.MigrateTo(ctx, version); err != nil {
		return fmt.Errorf("pgstore: migrate %s to version %d: %w", schema, version, err)
	}
	if version != newest {
		return nil
	}
	code, err := migrate.LoadCodePackage(orksql.Functions())
	if err != nil {
		return fmt.Errorf("pgstore: load functions: %w", err)
	}
	if err := migrate.InstallCodePackage(ctx, conn.Conn(), map[string]any{"schema": schema}, code); err != nil {
		return fmt.Errorf("pgstore: install functions into %s_api: %w", schema, err)
	}
	return nil
}

// Migrate installs or upgrades this Store's schema (see the package function).
func (s *Store) Migrate(ctx context.Context) error { return Migrate(ctx, s.pool, s.schema) }
