package triggerer

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/orkstate/orkstate/pgstore"
)

// MigrateRiver installs or upgrades River's tables in the install schema (River's
// own migrations through rivermigrate, each in its own transaction, recorded in
// <schema>.river_migration). Run it after pgstore.Migrate, which creates the
// schema. Processes that start at once are safe: a session advisory lock keyed by
// the schema serialises them (rivermigrate takes none of its own).
//
// It works on connections of its own (at most two, closed before it returns)
// opened with pool's settings but search_path pinned to pg_catalog and the
// schema, so functions planted in public cannot run inside River's migrations.
//
// Removing the install (pgstore.MigrateTo version 0) drops the schema and River's
// tables with it. A DBA who applies River's SQL through tern instead must not also
// call MigrateRiver; see the package documentation.
func MigrateRiver(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	if err := pgstore.ValidateSchemaName(schema); err != nil {
		return fmt.Errorf("triggerer: migrate river: %w", err)
	}
	// River's migrations call functions unqualified: run them on connections whose
	// search_path is pinned (see pinnedSearchPath), never the caller's.
	pinned, err := pinnedPool(pool, schema, 2)
	if err != nil {
		return fmt.Errorf("triggerer: migrate river into %s: %w", schema, err)
	}
	defer pinned.Close()
	conn, err := pinned.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("triggerer: migrate river into %s: %w", schema, err)
	}
	defer conn.Release()
	lockKey := "orkstate_river_migrate:" + schema
	if _, err := conn.Exec(ctx, "select pg_advisory_lock(hashtextextended($1, 0))", lockKey); err != nil {
		return fmt.Errorf("triggerer: migrate river into %s: lock: %w", schema, err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "select pg_advisory_unlock(hashtextextended($1, 0))", lockKey)
	}()

	m, err := rivermigrate.New(riverpgxv5.New(pinned), &rivermigrate.Config{
		Schema: schema,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return fmt.Errorf("triggerer: migrate river into %s: %w", schema, err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("triggerer: migrate river into %s: %w", schema, err)
	}
	return nil
}
