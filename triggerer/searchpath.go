package triggerer

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// River's queries name its tables with the schema but call functions (unnest,
// jsonb_set, ...) unqualified. Under a search_path that includes public, a
// function another role planted there (public.unnest(bigint[])) beats the
// polymorphic pg_catalog one because its argument types match exactly, and runs
// with our privileges. So every connection the triggerer opens for River work
// runs with pinnedSearchPath, and River work inside a caller's transaction pins
// it locally (withPinnedPath). TestShadowedPublicFunctions plants such shadows.

// pinnedSearchPath is pg_catalog first, then the install schema (River's tables and
// functions), and pg_temp last, where its relations cannot shadow anything.
func pinnedSearchPath(schema string) string {
	return "pg_catalog, " + pgx.Identifier{schema}.Sanitize() + ", pg_temp"
}

// pinnedPool returns a new pool to base's database, with base's settings and
// hooks, whose connections start with pinnedSearchPath (a startup parameter: no
// extra round trip, and a connection pooler that cannot honour it refuses the
// connection rather than silently dropping it; set again after base's
// AfterConnect, if any). maxConns > 0 replaces base's
// MaxConns. The pool connects lazily; the caller closes it.
func pinnedPool(base *pgxpool.Pool, schema string, maxConns int32) (*pgxpool.Pool, error) {
	cfg := base.Config()
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	path := pinnedSearchPath(schema)
	cfg.ConnConfig.RuntimeParams["search_path"] = path
	// The caller's AfterConnect runs after the startup parameters and might set
	// its own search_path: pin it again after it.
	if hook := cfg.AfterConnect; hook != nil {
		cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
			if err := hook(ctx, conn); err != nil {
				return err
			}
			_, err := conn.Exec(ctx, `select pg_catalog.set_config('search_path', $1, false)`, path)
			return err
		}
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
		cfg.MinConns = min(cfg.MinConns, maxConns)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("pool with a pinned search_path: %w", err)
	}
	return pool, nil
}

// withPinnedPath runs fn with pinnedSearchPath set locally in the caller's tx and
// then restores the caller's path, so River's statements in a transaction
// orkstate did not open are as safe as on its own connections.
func withPinnedPath(ctx context.Context, tx pgx.Tx, schema string, fn func() error) error {
	// One round trip; a batch runs its statements in order.
	b := &pgx.Batch{}
	var old string
	b.Queue(`select pg_catalog.current_setting('search_path')`).QueryRow(func(r pgx.Row) error { return r.Scan(&old) })
	b.Queue(`select pg_catalog.set_config('search_path', $1, true)`, pinnedSearchPath(schema))
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("triggerer: pin search_path: %w", err)
	}
	err := fn()
	if _, rerr := tx.Exec(ctx, `select pg_catalog.set_config('search_path', $1, true)`, old); rerr != nil && err == nil {
		err = fmt.Errorf("triggerer: restore search_path: %w", rerr)
	}
	return err
}
