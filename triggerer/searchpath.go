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

// pinnedPlanCacheMode is plan_cache_mode on the Triggerer's own connections.
const pinnedPlanCacheMode = "force_generic_plan"

// pinnedPool returns a new pool to base's database, with base's settings and
// hooks, whose connections start with pinnedSearchPath and with plan_cache_mode
// force_generic_plan (startup parameters: no extra round trip, and a connection
// pooler that cannot honour them refuses the connection rather than silently
// dropping them; set again after base's AfterConnect, if any). maxConns > 0
// replaces base's MaxConns. The pool connects lazily; the caller closes it.
//
// Generic plans: every statement on these connections is River's or the
// triggerer's own, all of them run with parameters many times, and PostgreSQL
// plans each one afresh (a custom plan) on its first five executions on every
// connection before it settles on the generic plan — the same plan for River's
// fetch, completion, rescue, scheduling and cleaning statements on a river_job of
// 500,000 rows (compared with EXPLAIN; the cleaner's custom planning alone took
// 1.4 ms). Those plannings cost a new triggerer about 20 µs of server CPU per
// deferred job over its first 5,000 (TestMeasureRounds). The group statement and
// the functions it calls already planned generically. On a River upgrade, check
// River's new statements' generic plans on a large river_job.
func pinnedPool(base *pgxpool.Pool, schema string, maxConns int32) (*pgxpool.Pool, error) {
	cfg := base.Config()
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	path := pinnedSearchPath(schema)
	cfg.ConnConfig.RuntimeParams["search_path"] = path
	cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = pinnedPlanCacheMode
	// The caller's AfterConnect runs after the startup parameters and might set
	// its own search_path or plan_cache_mode: pin them again after it.
	if hook := cfg.AfterConnect; hook != nil {
		cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
			if err := hook(ctx, conn); err != nil {
				return err
			}
			_, err := conn.Exec(ctx, `select pg_catalog.set_config('search_path', $1, false),
				pg_catalog.set_config('plan_cache_mode', $2, false)`, path, pinnedPlanCacheMode)
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
