package triggerer

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/jackc/pgx/v5"
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
// It then bounds the pending lists of River's two GIN indexes, river_job_args_index
// and river_job_metadata_index, at riverGINPendingListLimit kB (gin_pending_list_limit;
// see boundGINPendingLists), unless a DBA has set that or fastupdate on an index
// already or the index belongs to another role.
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
	if err := boundGINPendingLists(ctx, conn, schema); err != nil {
		return fmt.Errorf("triggerer: migrate river into %s: %w", schema, err)
	}
	return nil
}

// riverGINPendingListLimit is the gin_pending_list_limit, in kB, of River's GIN
// indexes in an install (PostgreSQL's default is 4,096).
const riverGINPendingListLimit = 1024

// riverGINIndexes are River's GIN indexes on river_job (args and metadata).
var riverGINIndexes = []string{"river_job_args_index", "river_job_metadata_index"}

// boundGINPendingLists sets gin_pending_list_limit on River's GIN indexes that the
// current role owns and that have neither it nor fastupdate set. Every version of a River job (insert, fetch,
// completion: none is a HOT update) adds its args' and metadata's keys and values
// to those indexes' pending lists, a finished poll's PollOutput about ten, and the
// backend whose insert finds a list over its limit merges the whole list into the
// index inside its own statement: at the default 4 MB, every 12,000 or so triggered
// jobs one of the triggerer's group statements (or a River fetch) took 35–55 ms
// more, and the groups queued behind it waited as long — the half-rate p99 of
// issue 18. At 1 MB (a quarter of the entries per merge) TestMeasureLatency's p99
// at half the maximum rate fell from 35–61 to 19–22 ms and its longest wait from
// 63–77 to 30–35 ms, for no more CPU per job over long runs (docs/architecture.md).
// fastupdate off removes the merges but cost about 20 µs of server CPU per job.
//
// ALTER INDEX … SET takes an ACCESS EXCLUSIVE lock on the index, so it is done
// only when the setting is missing, and waits at most 10 s for River's
// transactions; a timeout fails MigrateRiver with nothing changed, and calling it
// again retries. An index the current role does not own is left alone: an
// application role that calls MigrateRiver on every start, on an install its
// owner migrated with an earlier version, must not fail for a setting it cannot
// make (River's own migrations have nothing to do there).
func boundGINPendingLists(ctx context.Context, conn *pgxpool.Conn, schema string) error {
	rows, err := conn.Query(ctx, `select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
		where n.nspname = $1 and c.relname = any($2) and c.relkind = 'i'
		  and pg_has_role(c.relowner, 'USAGE')
		  and not exists (select from unnest(c.reloptions) o
		                  where o like 'gin_pending_list_limit=%' or o like 'fastupdate=%')
		order by c.relname`, schema, riverGINIndexes)
	if err != nil {
		return fmt.Errorf("find river's GIN indexes: %w", err)
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(missing) == 0 {
		return err
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "set local lock_timeout = '10s'"); err != nil {
			return err
		}
		for _, name := range missing {
			if _, err := tx.Exec(ctx, fmt.Sprintf("alter index %s set (gin_pending_list_limit = %d)",
				pgx.Identifier{schema, name}.Sanitize(), riverGINPendingListLimit)); err != nil {
				return fmt.Errorf("set gin_pending_list_limit on %s (run MigrateRiver again to retry): %w", name, err)
			}
		}
		return nil
	})
}
